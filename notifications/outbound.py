"""Outbound HTTP to user-given URLs (webhook receivers), safely.

Only http(s). The host is resolved here, every address is checked (private, loopback, link-local, multicast,
reserved and unspecified addresses are refused unless inside WEBHOOK_ALLOWED_NETWORKS), and the connection goes
to the address that was checked: the URL is rewritten to it, with the original Host header and, for https, the
original name for SNI and certificate checks, so a DNS answer that changes between check and connect
(rebinding) cannot send the request elsewhere. No redirect is followed; timeouts are short; at most a small
excerpt of the response is read.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx
from django.conf import settings


class Refused(Exception):
    """The URL may not be called (scheme, address); nothing was sent."""


@dataclass(frozen=True)
class Answer:
    status_code: int
    latency_ms: int
    excerpt: str


def _allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(cidr, strict=False) for cidr in settings.WEBHOOKS["ALLOWED_NETWORKS"]]


def address_allowed(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if any(ip in net for net in _allowed_networks()):
        return True
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified)


def check_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL that may be called, or Refused. Only its form, no lookup."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise Refused("only http and https URLs can receive webhooks")
    if not parts.hostname:
        raise Refused("the URL has no host")
    if parts.username or parts.password:
        raise Refused("credentials in the URL are not allowed")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise Refused("the URL's port is not valid") from None
    return parts.scheme, parts.hostname, port


def resolve(host: str, port: int) -> str:
    """The first address of `host` that may be called; Refused when any of them may not (a name that resolves to
    one public and one private address is refused outright)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise Refused(f"the host does not resolve ({exc.strerror})") from None
    addresses = [info[4][0] for info in infos]
    refused = [a for a in addresses if not address_allowed(a)]
    if refused or not addresses:
        raise Refused(f"the host resolves to an address that is not allowed ({refused[0] if refused else 'none'})")
    return addresses[0]


def post(url: str, *, body: bytes, headers: dict[str, str]) -> Answer:
    """POST to the checked address; raises Refused (nothing sent) or httpx.HTTPError (sent or not, no answer)."""
    scheme, host, port = check_url(url)
    address = resolve(host, port)
    parts = urlsplit(url)
    netloc = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    pinned = urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))
    cfg = settings.WEBHOOKS
    timeout = httpx.Timeout(cfg["READ_TIMEOUT_SECONDS"], connect=cfg["CONNECT_TIMEOUT_SECONDS"])
    host_header = parts.netloc.rsplit("@", 1)[-1]
    extensions = {"sni_hostname": host} if scheme == "https" else {}
    started = time.monotonic()
    with (
        httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client,
        client.stream(
            "POST",
            pinned,
            content=body,
            headers={**headers, "Host": host_header, "Content-Type": "application/json"},
            extensions=extensions,
        ) as resp,
    ):
        excerpt = b""
        for chunk in resp.iter_raw():
            excerpt += chunk
            if len(excerpt) >= cfg["RESPONSE_EXCERPT_BYTES"]:
                break
        latency = int((time.monotonic() - started) * 1000)
        return Answer(resp.status_code, latency, excerpt[: cfg["RESPONSE_EXCERPT_BYTES"]].decode(errors="replace"))

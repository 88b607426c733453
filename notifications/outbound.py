"""Outbound HTTP to user-given URLs (webhook receivers), safely.

Only http(s). The host is resolved here, every address is checked (private, loopback, link-local, multicast,
reserved and unspecified addresses are refused unless inside WEBHOOK_ALLOWED_NETWORKS; so is the IPv4 address
inside an IPv4-mapped, 6to4, Teredo, IPv4-compatible or NAT64 IPv6 address), and the connection goes to the
address that was checked: the URL is rewritten to it, with the original Host header and, for https, the original
name for SNI and certificate checks, so a DNS answer that changes between check and connect (rebinding) cannot
send the request elsewhere. No redirect is followed; at most a small excerpt of the response is read.

A whole attempt (lookup, connect, headers, body) ends at WEBHOOK_ATTEMPT_DEADLINE_SECONDS of wall-clock time: a
per-read timeout alone lets a receiver that drips a byte every few seconds hold the sender for minutes. It runs
on an event loop of its own so the deadline cancels it wherever it waits.

Each failure has a reason for the URL's owner (`str()`: generic, so the log is no prober of addresses and ports)
and a detail for staff (`.detail`).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx
from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# NAT64's well-known prefix (RFC 6052): the last 32 bits are an IPv4 address.
NAT64 = ipaddress.ip_network("64:ff9b::/96")
# C0 and C1 control characters but tab and newline: Postgres refuses NUL in text, the rest has no place in a log.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean_text(text: str) -> str:
    """Text a remote server or a user controls, safe to store and show: no control characters but tab, newline."""
    return _CONTROL.sub("", text)


class Failure(Exception):
    """An attempt without an answer. str(): the reason its URL's owner sees; `detail`: what staff see."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = clean_text(detail or reason)[:500]


class Refused(Failure):
    """The URL may not be called (scheme, address); nothing was sent."""


class NoAnswer(Failure):
    """Sent or not, no complete answer: connection failed, protocol error, or the deadline passed."""


# What owners are told: the same words whatever went wrong where (no address, port or timing detail).
ADDRESS_NOT_ALLOWED = "the URL's host cannot receive webhooks from this service"
NO_ANSWER = "no valid answer from the receiver within the time allowed"


@dataclass(frozen=True)
class Answer:
    status_code: int
    latency_ms: int
    excerpt: str


def _allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(cidr, strict=False) for cidr in settings.WEBHOOKS["ALLOWED_NETWORKS"]]


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address reaches through: mapped, 6to4, Teredo (server and client), the
    deprecated IPv4-compatible form, and NAT64's well-known prefix."""
    found: list[ipaddress.IPv4Address] = []
    if ip.ipv4_mapped:
        found.append(ip.ipv4_mapped)
    if ip.sixtofour:
        found.append(ip.sixtofour)
    if ip.teredo:
        found.extend(ip.teredo)
    packed = ip.packed
    if packed[:12] == bytes(12) and int(ip) > 1:  # ::a.b.c.d (not :: or ::1, judged as IPv6)
        found.append(ipaddress.IPv4Address(packed[12:]))
    if ip in NAT64:
        found.append(ipaddress.IPv4Address(packed[12:]))
    return found


def _public(ip: IPAddress) -> bool:
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified)


def _in_allowed_networks(ip: IPAddress) -> bool:
    return any(ip in net for net in _allowed_networks())


def address_allowed(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped  # an IPv4 address in IPv6 form: judged as itself
    if _in_allowed_networks(ip):
        return True
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if any(not (_in_allowed_networks(v4) or _public(v4)) for v4 in inner):
            return False  # a tunnel or translation prefix around a private or special IPv4 address
    return _public(ip)


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


@functools.cache
def _lookups() -> ThreadPoolExecutor:
    """Name lookups block (getaddrinfo has no timeout): they run here, so the deadline can leave one behind.
    Made on first use, in the process that sends (a forked worker gets its own)."""
    return ThreadPoolExecutor(max_workers=4, thread_name_prefix="webhook-lookup")


async def resolve(host: str, port: int) -> str:
    """The first address of `host` that may be called; Refused when any of them may not (a name that resolves to
    one public and one private address is refused outright)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.run_in_executor(_lookups(), functools.partial(socket.getaddrinfo, host, port, 0, 1))
    except socket.gaierror as exc:
        raise Refused(ADDRESS_NOT_ALLOWED, f"{host} does not resolve ({exc.strerror})") from None
    addresses = [info[4][0] for info in infos]
    refused = [a for a in addresses if not address_allowed(a)]
    if refused or not addresses:
        raise Refused(ADDRESS_NOT_ALLOWED, f"{host} resolves to an address that is not allowed ({refused or 'none'})")
    return addresses[0]


def post(url: str, *, body: bytes, headers: dict[str, str]) -> Answer:
    """POST to the checked address, all of it within the attempt deadline; raises Refused (nothing sent) or
    NoAnswer (sent or not, no answer in time)."""
    deadline = settings.WEBHOOKS["ATTEMPT_DEADLINE_SECONDS"]
    started = time.monotonic()
    try:
        return asyncio.run(asyncio.wait_for(_post(url, body=body, headers=headers, started=started), deadline))
    except TimeoutError:
        raise NoAnswer(NO_ANSWER, f"no complete answer within the {deadline:g} s deadline") from None
    except httpx.HTTPError as exc:
        raise NoAnswer(NO_ANSWER, f"{type(exc).__name__}: {exc}") from None


async def _post(url: str, *, body: bytes, headers: dict[str, str], started: float) -> Answer:
    scheme, host, port = check_url(url)
    address = await resolve(host, port)
    parts = urlsplit(url)
    netloc = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    pinned = urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))
    cfg = settings.WEBHOOKS
    # The connect bound keeps an unreachable host from using the whole deadline's worth of a worker.
    timeout = httpx.Timeout(cfg["ATTEMPT_DEADLINE_SECONDS"], connect=cfg["CONNECT_TIMEOUT_SECONDS"])
    host_header = parts.netloc.rsplit("@", 1)[-1]
    extensions = {"sni_hostname": host} if scheme == "https" else {}
    limit = cfg["RESPONSE_EXCERPT_BYTES"]
    async with (
        httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False) as client,
        client.stream(
            "POST",
            pinned,
            content=body,
            headers={**headers, "Host": host_header, "Content-Type": "application/json"},
            extensions=extensions,
        ) as resp,
    ):
        excerpt = b""
        async for chunk in resp.aiter_raw():
            excerpt += chunk
            if len(excerpt) >= limit:
                break
        latency = int((time.monotonic() - started) * 1000)
        return Answer(resp.status_code, latency, clean_text(excerpt[:limit].decode(errors="replace")))

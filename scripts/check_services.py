"""Fail fast, in one line, when the test suite's Postgres or Redis is not answering."""

from __future__ import annotations

import os
import socket
import sys
from urllib.parse import urlparse

HOW = {
    "Postgres": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    "Redis": 'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no',
}


def reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=2):
            return True
    except OSError:
        return False


def main() -> int:
    checks = [("Postgres", os.environ["DATABASE_URL"], 5432), ("Redis", os.environ["REDIS_URL"], 6379)]
    for name, url, port in checks:
        if not reachable(url, port):
            print(f"{name} is not answering at {url}; start it with: {HOW[name]}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

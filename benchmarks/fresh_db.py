"""A benchmark's own Postgres database, dropped and created anew, then migrated."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def recreate(database_url: str, env: dict[str, str] | None = None) -> None:
    admin_url, name = database_url.rsplit("/", 1)
    psql = ["psql", f"{admin_url}/postgres", "-qc"]
    subprocess.run([*psql, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], check=True)
    subprocess.run([*psql, f"CREATE DATABASE {name}"], check=True)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)

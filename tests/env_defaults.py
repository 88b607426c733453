"""Test-run defaults, loaded as a plugin (-p) before pytest-django reads settings: real Postgres and Redis."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/videogen")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
# The production profile refuses the development key; every process of a run must sign alike.
os.environ.setdefault("SECRET_KEY", "test-run-only-" + "k" * 40)
# One tiny model for the whole run, built once (deterministic weights), shared with spawned processes.
os.environ.setdefault("MODELS_DIR", str(Path(__file__).resolve().parent.parent / "var" / "test-models"))
# This run's own metric files (videogen.metrics), not a development server's.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(Path(__file__).resolve().parent.parent / "var" / "test-metrics"))

"""Test-run defaults, loaded as a plugin (-p) before pytest-django reads settings: real Postgres and Redis."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/videogen")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
# The production profile refuses the development key; every process of a run must sign alike.
os.environ.setdefault("SECRET_KEY", "test-run-only-" + "k" * 40)
# One tiny model for the whole run, built once (deterministic weights), shared with spawned processes.
os.environ.setdefault("MODELS_DIR", str(Path(__file__).resolve().parent.parent / "var" / "test-models"))
# This run's own metric files (videogen.metrics), not a development server's.
# Under pytest-xdist each worker counts into its own, so one worker's counters never move another's assertions.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR",
    str(Path(__file__).resolve().parent.parent / "var" / ("test-metrics" + (f"-{_WORKER}" if _WORKER else ""))),
)
# Content credentials (videogen.provenance): this run's own local authority and signer, made at the session's start
# (tests/conftest.py), in a folder of its own so that parallel runs never pair one's authority with another's signer.
_C2PA_DIR = Path(tempfile.mkdtemp(prefix="videogen-test-c2pa-"))
atexit.register(shutil.rmtree, _C2PA_DIR, True)
os.environ["C2PA_SIGN_CERT"] = str(_C2PA_DIR / "signer.pem")
os.environ["C2PA_SIGN_KEY"] = str(_C2PA_DIR / "signer.key")
os.environ["C2PA_LOCAL_CA"] = str(_C2PA_DIR / "ca.pem")

from videogen import boot  # noqa: E402

boot.prepare()  # as manage.py does: the folders and names libraries read from the environment at import

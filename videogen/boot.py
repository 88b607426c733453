"""What a videogen process prepares before Django reads its settings, so that the settings only read.

Two libraries read the environment when they are imported, not Django's settings: prometheus_client (the folder
every process of a host writes its counters to) and django-q2 (the cluster's name). The entry points (`manage.py`,
`videogen.asgi`) call `prepare()` first; it also makes the folders those and the embedded profile's SQLite write to.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from videogen.env import var_dir


def prepare() -> None:
    var = var_dir()
    metrics = Path(os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(var / "metrics")))
    metrics.mkdir(parents=True, exist_ok=True)
    if os.environ.get("Q_CLUSTER_NAME") == "gpu":
        # Each gpu cluster consumes a queue of its own (settings: RUNNER_QUEUE): one name per process and host.
        os.environ["Q_CLUSTER_NAME"] = f"gpu.{socket.gethostname()}.{os.getpid()}"
    if not os.environ.get("DATABASE_URL"):
        var.mkdir(parents=True, exist_ok=True)  # the embedded profile's SQLite file


def setup() -> None:
    """Django set up as a videogen process: for scripts that are not started by `manage.py` (the benchmarks)."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "videogen.settings")
    prepare()
    django.setup()

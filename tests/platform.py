"""Starts the real roles (web, dispatcher, cpu and gpu qclusters) as child processes for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.request import urlopen

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Platform:
    def __init__(self, *, database_name: str, workdir: Path, extra_env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir
        db_url = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/" + database_name
        self.env = {
            **os.environ,
            "DATABASE_URL": db_url,
            "MEDIA_ROOT": str(workdir / "media"),
            "PYTHONUNBUFFERED": "1",
            "JOB_HEARTBEAT_SECONDS": "0.5",
            "RUNNER_HEARTBEAT_SECONDS": "0.5",
            "DISPATCH_INTERVAL_SECONDS": "0.1",
            "POLL_AFTER_MS": "200",
            **(extra_env or {}),
        }
        self.procs: dict[str, subprocess.Popen] = {}

    def _start(self, name: str, argv: list[str], **env: str) -> None:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115  (closed with the process)
        self.procs[name] = subprocess.Popen(
            argv, cwd=ROOT, env={**self.env, **env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def start(self, timeout: float = 90) -> Platform:
        py = sys.executable
        self._start(
            "web",
            [
                py,
                "-m",
                "uvicorn",
                "videogen.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
        )
        self._start("dispatcher", [py, "manage.py", "dispatch"])
        self._start("cpu", [py, "manage.py", "qcluster"])
        self._start("gpu", [py, "manage.py", "qcluster"], Q_CLUSTER_NAME="gpu")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with urlopen(self.base_url + "/healthz", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        else:
            raise TimeoutError("web did not answer /healthz\n" + self.logs())
        return self

    def wait_for_runner(self, timeout: float = 90) -> None:
        from jobs.services import live_slots

        deadline = time.monotonic() + timeout
        while live_slots() == 0:
            self.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError("no gpu runner registered\n" + self.logs())
            time.sleep(0.2)

    def check_alive(self) -> None:
        dead = {name: p.returncode for name, p in self.procs.items() if p.poll() is not None}
        if dead:
            raise RuntimeError(f"processes exited: {dead}\n" + self.logs())

    def logs(self, tail: int = 4000) -> str:
        out = []
        for name in self.procs:
            text = (self.workdir / f"{name}.log").read_text(errors="replace")
            out.append(f"----- {name} -----\n{text[-tail:]}")
        return "\n".join(out)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

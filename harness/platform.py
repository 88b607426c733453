"""Starts the real roles (web, dispatcher, cpu, delivery and gpu qclusters) as child processes for end-to-end
tests."""

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
    def __init__(self, *, database_url: str, redis_url: str, workdir: Path, extra_env: dict | None = None) -> None:
        """Empty database_url / redis_url run the embedded profile (SQLite, in-memory channel layer)."""
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "SQLITE_PATH": str(workdir / "embedded.sqlite3"),
            "MEDIA_ROOT": str(workdir / "media"),
            "PROMETHEUS_MULTIPROC_DIR": str(workdir / "metrics"),  # this installation's counters alone
            "PYTHONUNBUFFERED": "1",
            "JOB_HEARTBEAT_SECONDS": "0.5",
            "RUNNER_HEARTBEAT_SECONDS": "0.5",
            "DISPATCH_INTERVAL_SECONDS": "0.1",
            "POLL_AFTER_MS": "200",
            **(extra_env or {}),
        }
        self.procs: dict[str, subprocess.Popen] = {}

    def manage(self, *args: str) -> str:
        """Run a management command as a user would, in this platform's environment."""
        proc = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env={**self.env, "VIDEOGEN_ROLE": "worker"},
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def _start(self, name: str, argv: list[str], **env: str) -> None:
        # Explicit, because importing videogen.asgi in the test process sets VIDEOGEN_ROLE=web in its
        # environment, and a forking qcluster must never inherit the web role's connection pool.
        env.setdefault("VIDEOGEN_ROLE", "web" if name == "web" else "worker")
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115  (closed with the process)
        self.procs[name] = subprocess.Popen(
            argv, cwd=ROOT, env={**self.env, **env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def _start_web(self) -> None:
        # The web role exactly as `make run` starts it, with two processes (as many as a 1-core host gets).
        argv = [sys.executable, "manage.py", "web", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "2"]
        self._start("web", argv)

    def start(self, timeout: float = 90, gpu: bool = True, workers: bool = True) -> Platform:
        """All roles; `workers=False` starts the web role alone (the API and pages, nothing runs jobs)."""
        py = sys.executable
        self._start_web()
        if workers:
            self._start("dispatcher", [py, "manage.py", "dispatch"])
            self._start("cpu", [py, "manage.py", "qcluster"], OMP_NUM_THREADS="1")  # as supervisord.conf runs it
            self.start_delivery()
        if workers and gpu:
            self.start_gpu()
        self._wait_for_web(timeout)
        return self

    def _wait_for_web(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with urlopen(self.base_url + "/healthz", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError("web did not answer /healthz\n" + self.logs())

    def crash_web(self, timeout: float = 60) -> None:
        """SIGKILL the web role mid-request, then restart it as a supervisor would; back once it answers."""
        self.kill("web")
        self._start_web()
        self._wait_for_web(timeout)

    def start_delivery(self) -> None:
        """The delivery role: webhook deliveries and tests, and emails, on a queue of their own."""
        self._start("delivery", [sys.executable, "manage.py", "qcluster"], Q_CLUSTER_NAME="delivery")

    def start_gpu(self, name: str = "gpu", **env: str) -> None:
        """A gpu cluster; `name` is also its queue (plain "gpu" gets a unique gpu.<host>.<pid>)."""
        self._start(name, [sys.executable, "manage.py", "qcluster"], Q_CLUSTER_NAME=name, **env)

    def signal(self, name: str, sig: int) -> None:
        """Send a signal to a role and every process it forked (as a supervisor stopping it would)."""
        os.killpg(self.procs[name].pid, sig)

    def kill(self, name: str) -> None:
        """SIGKILL a role and every process it forked (a crashed host, not a clean shutdown)."""
        proc = self.procs[name]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        del self.procs[name]

    def wait_for_runner(self, timeout: float = 90, slots: int = 1) -> None:
        from jobs.services import live_slots

        deadline = time.monotonic() + timeout
        while live_slots() < slots:
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

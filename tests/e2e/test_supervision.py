"""`make run` under its supervisor (supervisord.conf, as shipped): a role that dies comes back by itself, the
others stay up, no orphan of a killed qcluster advertises a slot, and Ctrl-C leaves no process behind."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from urllib.request import urlopen

import pytest
from openai import OpenAI

from harness.platform import ROOT, Platform

pytestmark = pytest.mark.e2e
TTL = 2.0  # runner registrations expire fast here, so an orphan still advertising would be seen


def _pgid_members(pgid: int) -> set[int]:
    members = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[2]) == pgid:
                members.add(int(entry.name))
    return members


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pids: set[int]) -> set[int]:
    return {p for p in pids if Path(f"/proc/{p}").exists() and "zombie" not in _state(p)}


def _state(pid: int) -> str:
    try:
        return (Path(f"/proc/{pid}/status").read_text().split("State:", 1)[1].split("\n", 1)[0]).lower()
    except (OSError, IndexError):
        return "zombie"


class Supervised:
    def __init__(self, workdir: Path) -> None:
        self.plat = Platform(database_url="", redis_url="", workdir=workdir, extra_env={"RUNNER_TTL_SECONDS": str(TTL)})
        conf = (ROOT / "supervisord.conf").read_text()
        rundir = workdir / "supervisor"
        rundir.mkdir()
        self.conf = workdir / "supervisord.conf"
        self.conf.write_text(conf.replace("%(here)s/var", str(rundir)).replace("%(here)s", str(ROOT)))
        self.env = {**self.plat.env, "PORT": str(self.plat.port), "HOST": "127.0.0.1"}
        self.env.pop("VIDEOGEN_ROLE", None)  # as from a user's shell
        self.log = open(workdir / "supervisord.out", "ab")  # noqa: SIM115  (closed in stop)
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "supervisor.supervisord", "-c", str(self.conf)],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def ctl(self, *args: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "supervisor.supervisorctl", "-c", str(self.conf), *args],
            capture_output=True,
            text=True,
            env=self.env,
            check=False,
        )
        return out.stdout

    def pid(self, role: str) -> int:
        return int(self.ctl("pid", role).strip() or 0)

    def live_runners(self) -> list[str]:
        with sqlite3.connect(self.plat.env["SQLITE_PATH"], timeout=20) as db:
            rows = db.execute(
                "SELECT name FROM jobs_runner WHERE NOT draining AND last_seen_at > strftime('%Y-%m-%d %H:%M:%f', "
                "'now', ?)",
                (f"-{TTL} seconds",),
            ).fetchall()
        return [r[0] for r in rows]

    def output(self) -> str:
        return (self.plat.workdir / "supervisord.out").read_text(errors="replace")[-6000:]


def _wait(what: str, check, timeout: float, sup: Supervised):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}\n{sup.output()}")


def _healthy(base_url: str) -> bool:
    try:
        with urlopen(base_url + "/healthz", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def test_a_role_that_dies_comes_back_and_the_others_stay_up(tmp_path, tiny_model_dir, moderation_model):
    sup = Supervised(tmp_path)
    sup.plat.manage("migrate", "--noinput", "-v", "0")
    key = sup.plat.manage("create_api_key", "supervised-user").strip().splitlines()[-1]
    sup.start()
    seen: set[int] = set()
    try:
        supervisord = sup.proc.pid
        _wait("the web role", lambda: _healthy(sup.plat.base_url), 90, sup)
        first_runner = _wait("a runner", sup.live_runners, 90, sup)

        # The web role is watched from here on: not one refused or failed health check.
        failures: list[float] = []
        watching = threading.Event()
        watching.set()

        def watch() -> None:
            while watching.is_set():
                if not _healthy(sup.plat.base_url):
                    failures.append(time.monotonic())
                time.sleep(0.1)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()

        # 1. SIGKILL of the gpu cluster's qcluster process alone: its sentinel and worker must not outlive it.
        old = sup.pid("gpu")
        old_group = _pgid_members(old)
        assert len(old_group) >= 4, old_group  # qcluster, sentinel, pusher, monitor, worker
        seen |= old_group
        os.kill(old, signal.SIGKILL)
        _wait("the old cluster's processes to end", lambda: not _alive(old_group), 15, sup)
        new = _wait("a new gpu cluster", lambda: sup.pid("gpu") not in (0, old) and sup.pid("gpu"), 30, sup)
        _wait("the new runner", lambda: set(sup.live_runners()) - set(first_runner), 90, sup)
        # Exactly one slot on offer for the one GPU, seen for twice the registration TTL.
        until = time.monotonic() + 2 * TTL
        while time.monotonic() < until:
            assert len(sup.live_runners()) == 1, sup.live_runners()
            time.sleep(0.2)

        # 2. Every process of the gpu cluster killed at once, then the dispatcher: both come back.
        seen |= _pgid_members(new)
        os.killpg(new, signal.SIGKILL)
        dispatcher = sup.pid("dispatcher")
        os.kill(dispatcher, signal.SIGKILL)
        _wait("the gpu cluster again", lambda: sup.pid("gpu") not in (0, new), 30, sup)
        _wait("the dispatcher again", lambda: sup.pid("dispatcher") not in (0, dispatcher), 30, sup)
        _wait("one runner again", lambda: len(sup.live_runners()) == 1, 90, sup)

        # 3. The restarted platform still generates.
        client = OpenAI(base_url=sup.plat.base_url + "/v1", api_key=key, max_retries=0)
        warnings.simplefilter("ignore", DeprecationWarning)
        video = client.videos.create_and_poll(prompt="a supervised fox", poll_interval_ms=200)
        assert video.status == "completed", sup.output()

        watching.clear()
        watcher.join()
        assert failures == [], f"the web role failed {len(failures)} health checks while other roles died"
        status = sup.ctl("status")
        assert status.count("RUNNING") == 5, status  # web, dispatcher, gpu, cpu, delivery

        # 4. Ctrl-C: supervisord stops every role and every process they forked.
        seen |= _descendants(supervisord)
        os.kill(supervisord, signal.SIGINT)
        sup.proc.wait(timeout=60)
        _wait("every process to end", lambda: not _alive(seen), 15, sup)
    finally:
        if sup.proc and sup.proc.poll() is None:
            os.killpg(sup.proc.pid, signal.SIGKILL)
        for pid in _alive(seen | _descendants(sup.proc.pid if sup.proc else 0)):
            os.kill(pid, signal.SIGKILL)
        sup.log.close()
        print(sup.output())

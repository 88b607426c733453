"""Hosts on one machine for multi-host tests: each host is a network namespace with a hostname of its own, joined
to the others by a bridge that lives in a namespace of its own (the switch). Only namespaces made here carry
addresses (10.231.0.0/24), plus one veth end in the caller's namespace (10.231.0.1) so the test process can
reach the hosts as a client on the same switch would; it goes with the switch.

A host's link is cut at the switch (its port set down: a pulled cable, the host sees no carrier and its
packets go nowhere), or for one destination only by pointing that address at a MAC address nobody has (a
silent drop of that traffic alone, as a partition between two hosts looks). Nothing is killed to cut a link.

Every namespace is named with PREFIX; a run holds LOCK_PATH for its lifetime and first removes what a crashed
earlier run left (its processes and namespaces), so two runs on one machine take turns.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "vgh-"
SUBNET = "10.231.0"
SWITCH = PREFIX + "switch"
BRIDGE = "br0"
ROOT_LINK = PREFIX + "root"  # the caller's end, in the caller's namespace
ROOT_ADDRESS = f"{SUBNET}.1"
LOCK_PATH = Path(tempfile.gettempdir()) / "videogen-hosts.lock"
NOBODY_MAC = "02:00:00:00:de:ad"  # a locally administered address no interface here has


class Unsupported(RuntimeError):
    """This machine cannot make namespaces (not root, no `ip netns`, no `unshare`): the caller skips."""


def _run(*argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip() or done.stdout.strip()}")
    return done


def ip(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return _run("ip", *(("-n", ns) if ns else ()), *args, check=check)


def namespaces() -> list[str]:
    if shutil.which("ip") is None:
        return []
    out = _run("ip", "netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def check_capable() -> None:
    """Raise Unsupported with the reason when namespaces, veths or UTS namespaces cannot be made here."""
    if os.geteuid() != 0:
        raise Unsupported("network namespaces need root")
    for tool in ("ip", "unshare", "runuser", "redis-server"):
        if shutil.which(tool) is None:
            raise Unsupported(f"`{tool}` is not installed")
    try:
        pwd.getpwnam("postgres")  # Postgres refuses to run as root: the data host's server runs as this user
    except KeyError:
        raise Unsupported("no `postgres` OS user (Debian's postgresql package makes it)") from None
    probe = f"{PREFIX}probe-{os.getpid()}"
    try:
        ip("netns", "add", probe)
        ip("link", "add", "name", "va", "type", "veth", "peer", "name", "vb", ns=probe)
        _run("ip", "netns", "exec", probe, "unshare", "--uts", "sh", "-c", "hostname probe && hostname")
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        raise Unsupported(f"namespaces are refused on this machine: {exc}") from exc
    finally:
        ip("netns", "del", probe, check=False)


def kill_namespace(ns: str) -> None:
    """SIGKILL every process inside a namespace, then delete it (its veths go with it)."""
    for _ in range(20):
        pids = [int(p) for p in _run("ip", "netns", "pids", ns, check=False).stdout.split()]
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    ip("netns", "del", ns, check=False)


def remove_leftovers() -> list[str]:
    """What a crashed earlier run left: its namespaces (and so its veths, the caller's end too) and processes."""
    left = [ns for ns in namespaces() if ns.startswith(PREFIX)]
    for ns in left:
        kill_namespace(ns)
    ip("link", "del", ROOT_LINK, check=False)  # normally gone with the switch
    return left


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path
    stop_signal: int = signal.SIGTERM


@dataclass
class Host:
    name: str  # also its hostname
    ns: str
    address: str
    port: str  # its link's end in the switch
    extra: list[str] = field(default_factory=list)  # more addresses on its link


class Network:
    """The switch, the hosts on it and the processes they run; close() (or the with block) removes all of it."""

    def __init__(self, workdir: Path, *, lock_timeout: float = 600) -> None:
        self.workdir = workdir
        self.hosts: dict[str, Host] = {}
        self.procs: list[Proc] = []
        self.lock_timeout = lock_timeout
        self._lock = None
        self.scratch: list[Path] = []  # folders outside workdir (a service's user must reach them): removed at close

    def __enter__(self) -> Network:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        check_capable()
        self._lock = open(LOCK_PATH, "w")  # noqa: SIM115  (held until close)
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"another multi-host run holds {LOCK_PATH}") from None
                time.sleep(1)
        left = remove_leftovers()
        if left:
            print(f"hosts: removed what an earlier run left: {left}", flush=True)
        ip("netns", "add", SWITCH)
        ip("link", "set", "lo", "up", ns=SWITCH)
        ip("link", "add", "name", BRIDGE, "type", "bridge", ns=SWITCH)
        ip("link", "set", BRIDGE, "up", ns=SWITCH)
        ip("link", "add", "name", ROOT_LINK, "type", "veth", "peer", "name", "p-root", "netns", SWITCH)
        ip("link", "set", "p-root", "master", BRIDGE, "up", ns=SWITCH)
        ip("addr", "add", f"{ROOT_ADDRESS}/24", "dev", ROOT_LINK)
        ip("link", "set", ROOT_LINK, "up")

    def add_host(self, name: str, n: int, *, extra: tuple[int, ...] = ()) -> Host:
        """Host `name` at 10.231.0.n (plus 10.231.0.m for each m in extra), its link eth0 plugged into the switch."""
        ns, port = PREFIX + name, f"p-{name}"[:15]
        ip("netns", "add", ns)
        ip("link", "set", "lo", "up", ns=ns)
        ip("link", "add", "name", port, "type", "veth", "peer", "name", "eth0", "netns", ns, ns=SWITCH)
        ip("link", "set", port, "master", BRIDGE, "up", ns=SWITCH)
        addresses = [f"{SUBNET}.{n}", *(f"{SUBNET}.{m}" for m in extra)]
        for address in addresses:
            ip("addr", "add", f"{address}/24", "dev", "eth0", ns=ns)
        ip("link", "set", "eth0", "up", ns=ns)
        host = self.hosts[name] = Host(name=name, ns=ns, address=addresses[0], port=port, extra=addresses[1:])
        return host

    # --- faults ---------------------------------------------------------------------------------------------

    def cut(self, name: str) -> None:
        """Pull the host's cable: its switch port goes down (no kill, no signal: its processes keep running)."""
        ip("link", "set", self.hosts[name].port, "down", ns=SWITCH)

    def restore(self, name: str) -> None:
        ip("link", "set", self.hosts[name].port, "up", ns=SWITCH)

    def cut_between(self, name: str, address: str) -> None:
        """Silently drop what host `name` sends to `address` (and so every answer): that address now resolves to
        a MAC address nobody has. Its other traffic flows."""
        ip("neigh", "replace", address, "lladdr", NOBODY_MAC, "dev", "eth0", "nud", "permanent", ns=self.hosts[name].ns)

    def restore_between(self, name: str, address: str) -> None:
        ip("neigh", "del", address, "dev", "eth0", ns=self.hosts[name].ns, check=False)

    def scratch_dir(self, label: str, owner: str | None = None) -> Path:
        """A folder of its own in the system's temporary folder (a test's workdir may not be reachable by owner)."""
        path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{label}-"))
        self.scratch.append(path)
        if owner:
            shutil.chown(path, owner, owner)
        return path

    # --- processes ------------------------------------------------------------------------------------------

    def spawn(
        self,
        host: str,
        name: str,
        argv: list[str],
        env: dict[str, str],
        *,
        cwd: Path | None = None,
        user: str | None = None,
        stop_signal: int = signal.SIGTERM,
    ) -> Proc:
        """Run argv on a host (its namespace, under its hostname), in a process group of its own."""
        h = self.hosts[host]
        if user:
            argv = ["runuser", "-u", user, "--", *argv]
        wrapped = ["ip", "netns", "exec", h.ns, "unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', h.name]
        log = self.workdir / f"{name}.log"
        out = open(log, "ab")  # noqa: SIM115  (closed with the process)
        popen = subprocess.Popen(
            [*wrapped, *argv], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        out.close()
        proc = Proc(name=name, popen=popen, log=log, stop_signal=stop_signal)
        self.procs.append(proc)
        return proc

    def check_alive(self) -> None:
        dead = {p.name: p.popen.returncode for p in self.procs if p.popen.poll() is not None}
        if dead:
            raise RuntimeError(f"processes exited: {dead}\n{self.logs()}")

    def logs(self, tail: int = 3000) -> str:
        out = []
        for proc in self.procs:
            text = proc.log.read_text(errors="replace") if proc.log.exists() else ""
            out.append(f"----- {proc.name} -----\n{text[-tail:]}")
        return "\n".join(out)

    def stop(self, proc: Proc, timeout: float = 15) -> None:
        if proc.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.popen.pid, proc.stop_signal)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.popen.pid, signal.SIGKILL)  # whatever of its group is left
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(timeout=5)

    def close(self) -> None:
        """Stop every process (a graceful signal to all, SIGKILL after 10 s), then remove every namespace."""
        try:
            for proc in self.procs:  # all at once: each stops in parallel with the others
                if proc.popen.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.popen.pid, proc.stop_signal)
            deadline = time.monotonic() + 10
            for proc in reversed(self.procs):
                self.stop(proc, timeout=max(0.1, deadline - time.monotonic()))
            self.procs.clear()
        finally:
            for host in list(self.hosts.values()):
                kill_namespace(host.ns)
            self.hosts.clear()
            kill_namespace(SWITCH)
            ip("link", "del", ROOT_LINK, check=False)
            for path in self.scratch:
                shutil.rmtree(path, ignore_errors=True)
            self.scratch.clear()
            if self._lock is not None:
                self._lock.close()
                self._lock = None


# --- the data host's services ----------------------------------------------------------------------------------


def _wait(check, what: str, net: Network, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except Exception:
            pass
        net.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not come up\n{net.logs()}")
        time.sleep(0.2)


def start_postgres(net: Network, host: str, address: str) -> str:
    """A Postgres of its own on the host (initdb in a scratch folder, as the postgres OS user: it refuses root,
    trust on the switch's subnet, durability off: it lives for one run). Returns the admin URL (no database)."""
    import glob

    import psycopg

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise Unsupported("no Postgres server binaries under /usr/lib/postgresql")
    bindir = Path(found[-1]).parent
    data = net.scratch_dir("pg", owner="postgres")
    _run("runuser", "-u", "postgres", "--", str(bindir / "initdb"), "-D", str(data / "db"), "-U", "postgres",
         "--auth=trust", "--no-sync", "-E", "UTF8", timeout=120)  # fmt: skip
    with open(data / "db" / "pg_hba.conf", "a") as hba:
        hba.write(f"host all all {SUBNET}.0/24 trust\n")
    argv = [str(bindir / "postgres"), "-D", str(data / "db"), "-p", "5432", "-c", f"listen_addresses={address}",
            "-c", f"unix_socket_directories={data}", "-c", "fsync=off", "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off", "-c", "max_connections=300"]  # fmt: skip
    net.spawn(host, "postgres", argv, {"PATH": os.environ["PATH"], "LANG": "C.UTF-8"}, cwd=data, user="postgres",
              stop_signal=signal.SIGINT)  # fmt: skip
    url = f"postgres://postgres@{address}:5432"
    _wait(lambda: psycopg.connect(f"{url}/postgres", connect_timeout=2).close() or True, "postgres", net)
    return url


def start_redis(net: Network, host: str, address: str) -> str:
    import redis

    data = net.scratch_dir("redis")
    argv = ["redis-server", "--bind", address, "--port", "6379", "--save", "", "--appendonly", "no",
            "--protected-mode", "no", "--dir", str(data)]  # fmt: skip
    net.spawn(host, "redis", argv, {"PATH": os.environ["PATH"]})
    url = f"redis://{address}:6379/0"
    _wait(lambda: redis.Redis.from_url(url, socket_timeout=2).ping(), "redis", net)
    return url


def start_s3(net: Network, host: str, address: str, bucket: str, python: str) -> str:
    """moto's S3 API server (its server mode) on the host, with an empty bucket. Returns its endpoint URL."""
    import boto3
    import httpx

    net.spawn(host, "s3", [python, "-m", "moto.server", "-H", address, "-p", "9000"], {"PATH": os.environ["PATH"]})
    url = f"http://{address}:9000"
    _wait(lambda: httpx.get(url, timeout=2) is not None, "moto's S3 server", net)
    boto3.client(
        "s3", endpoint_url=url, aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    ).create_bucket(Bucket=bucket)
    return url

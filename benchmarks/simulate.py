"""Fleet simulation: the real dispatcher process and Postgres, SIMULATED runners, simulated users.

A benchmark, not a test: it measures how the scheduler and admission behave under a backlog and a capacity drop.

- Its own database (`videogen_sim`, dropped and recreated), migrated; the real dispatcher (`manage.py dispatch`)
  as a child process; N simulated runners (gpu_runner.simulated, one slot each on their own queue) and the
  simulated cpu stages as threads of this process.
- Simulated users of three tiers submit through `jobs.services.job_submit` (the real admission: caps, credits,
  capacity 503) as Poisson streams whose total is above capacity, so a backlog builds. Caps and credits are
  set generously: what is under test is scheduling and admission by capacity.
- Half-way through, half the runners stop gracefully (as on SIGTERM: each gives its job in hand back).
- Every duration is scaled by the time factor (real seconds = simulated seconds x factor): job durations, tier
  wait bounds and aging. Timers that detect dead processes (leases, heartbeats, registration TTL) are scaled
  too but kept above floors this machine can honour. Waits are reported unscaled (simulated seconds); slot
  gaps in real milliseconds.

Writes var/simulate/report.txt and var/simulate/plot.png and prints the report; the last line of stdout is
one JSON object. Also runs benchmarks/dispatch_scale.py at 100k queued jobs for `dispatch_ms_per_job_100k`.

    .venv/bin/python benchmarks/simulate.py [--runners 8] [--time-factor 0.06] [--duration 150] [--drain 45]
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import math
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import fresh_db  # noqa: E402  (after the path is set)

MODEL = "wan-tiny"
TIERS = ("free", "paid", "internal")

# The tiers under simulation, in simulated (unscaled) seconds. Weights, aging and the paid and internal bounds
# are the project's defaults (videogen/settings.py). The free tier's wait bound is 300 s, not 900: with 900, the
# free backlog admitted before the capacity halves needs about twice its bound afterwards, so hundreds of free
# jobs pass their aging bound together and go before paid work (measured: paid p95 255 s, free max 2116 s).
# Caps are lifted (0 = no limit) and the daily credit allowance is large, so only capacity sheds work.
# internal stays unmetered (-1) and is never shed (bound 0).
TIER_DEFAULTS: dict[str, dict[str, float]] = {
    "free": {"WEIGHT": 1, "WAIT_BOUND_SECONDS": 300, "AGING_SECONDS": 1800},
    "paid": {"WEIGHT": 3, "WAIT_BOUND_SECONDS": 3600, "AGING_SECONDS": 1800},
    "internal": {"WEIGHT": 6, "WAIT_BOUND_SECONDS": 0, "AGING_SECONDS": 600},
}
TIER_CAPS = {"MAX_INFLIGHT": 0, "MAX_QUEUED": 0, "DAILY_JOBS": 0}
TIER_CREDITS = {"free": 10**9, "paid": 10**9, "internal": -1}
SCALED_TIER_FIELDS = ("WAIT_BOUND_SECONDS", "AGING_SECONDS")

# VIDEOGEN key -> (environment variable, production default in simulated seconds, floor in real seconds).
# The floors keep liveness timers honourable on a 2-core machine running ~15 threads and Postgres.
TIMERS: dict[str, tuple[str, float, float]] = {
    "LEASE_SECONDS": ("JOB_LEASE_SECONDS", 30.0, 5.0),
    "HEARTBEAT_SECONDS": ("JOB_HEARTBEAT_SECONDS", 2.0, 1.0),
    "RUNNER_HEARTBEAT_SECONDS": ("RUNNER_HEARTBEAT_SECONDS", 2.0, 0.5),
    "RUNNER_TTL_SECONDS": ("RUNNER_TTL_SECONDS", 10.0, 2.5),
    "DISPATCH_TIMEOUT_SECONDS": ("JOB_DISPATCH_TIMEOUT_SECONDS", 60.0, 3.0),
    "RETRY_BACKOFF_SECONDS": ("JOB_RETRY_BACKOFF_SECONDS", 5.0, 0.05),
    "DISPATCH_INTERVAL_SECONDS": ("DISPATCH_INTERVAL_SECONDS", 0.2, 0.05),
    "QUEUE_PUBLISH_SECONDS": ("QUEUE_PUBLISH_SECONDS", 1.0, 0.25),
    "STAGE_RESEND_SECONDS": ("STAGE_RESEND_SECONDS", 120.0, 10.0),
}


@dataclass
class SimConfig:
    runners: int = 8
    # 0.06: a job of the p50 (30 s) runs 1.8 s real, the mean (49 s) 2.9 s. The busy fraction loses a slot gap
    # per job, so it is about 1 - gap / mean duration: the same ~37 ms gaps cost 3.7% at 0.02, 1.5% at 0.05,
    # 1.3% at 0.06 (and 0.08% at real durations, factor 1).
    time_factor: float = 0.06
    duration: float = 150.0  # real seconds of submissions; half the runners stop half-way
    drain: float = 45.0  # at most this long (real seconds) after submissions end, for the backlog to drain
    p50: float = 30.0  # simulated seconds
    p99: float = 300.0
    fail_rate: float = 0.0
    free_users: int = 40
    paid_users: int = 8
    internal_users: int = 1
    # Offered load per tier, as a fraction of the initial fleet's capacity (jobs per second at the mean
    # duration). Free alone is above capacity; paid and internal fit in their share even at half capacity.
    free_load: float = 1.6
    paid_load: float = 0.25
    internal_load: float = 0.04
    submitters: int = 4
    seed: int = 7
    poll_seconds: float = 0.02  # simulated runners' and cpu stages' pickup poll
    # All simulated runners share this process's GIL, where real ones each have a process: a thread whose query
    # returned waits up to the switch interval (5 ms by default) for the GIL, on every round trip. A shorter
    # interval keeps that harness artefact out of the slot gap.
    switch_interval: float = 0.0005
    # Users and cpu stages (the web and cpu-worker roles of the real system) in a second process, so the
    # simulated runners do not share their GIL with them; False runs them as threads of this process.
    helper_process: bool = True
    # The cost model (jobs.services.costs) starts from the fleet's history: the shape's mean duration, as a
    # platform that has run for a while knows it. Every simulated job has the same shape, so the whole spread of
    # durations lands on one shape: a slow learning rate keeps the estimate near the mean (0.2, the default,
    # makes it swing by +-40% with this spread, and admission with it).
    cost_learning_rate: float = 0.02
    tiers: dict[str, dict[str, float]] = field(default_factory=lambda: {t: dict(v) for t, v in TIER_DEFAULTS.items()})

    @property
    def drop_at(self) -> float:
        return self.duration / 2

    def durations(self):
        from gpu_runner.simulated import SimulatedDurations

        return SimulatedDurations(p50=self.p50, p99=self.p99, time_factor=self.time_factor, fail_rate=self.fail_rate)


def scaled_timers(cfg: SimConfig) -> dict[str, float]:
    return {key: max(default * cfg.time_factor, floor) for key, (_, default, floor) in TIMERS.items()}


def scenario_env(cfg: SimConfig) -> dict[str, str]:
    """The environment both this process and the dispatcher run under (videogen/settings.py reads it)."""
    env = {TIMERS[key][0]: f"{value:g}" for key, value in scaled_timers(cfg).items()}
    env["COST_LEARNING_RATE"] = f"{cfg.cost_learning_rate:g}"
    for tier, fields in cfg.tiers.items():
        values = {**TIER_CAPS, "DAILY_CREDITS": TIER_CREDITS[tier], **fields}
        for name, value in values.items():
            value = value * cfg.time_factor if name in SCALED_TIER_FIELDS else value
            env[f"TIER_{tier.upper()}_{name}"] = f"{value:g}"
    return env


def apply_to_settings(settings, cfg: SimConfig) -> None:
    """The same values onto an already configured settings object (the test suite's process)."""
    timers = scaled_timers(cfg)
    settings.VIDEOGEN = {**settings.VIDEOGEN, **timers, "COST_LEARNING_RATE": cfg.cost_learning_rate}
    tiers = {t: dict(v) for t, v in settings.VIDEOGEN_TIERS.items()}
    for name, value in scenario_env(cfg).items():
        if name.startswith("TIER_"):
            _, tier, field_name = name.split("_", 2)
            tiers[tier.lower()][field_name] = float(value)
    settings.VIDEOGEN_TIERS = tiers


# --- the run ---------------------------------------------------------------------------------------------


@dataclass
class Submission:
    at: float  # when it was due (wall clock)
    done: float
    tier: str
    user_id: int
    outcome: str  # "accepted" or the refusal code
    status: int
    job_id: int | None


@dataclass
class RunData:
    cfg: SimConfig
    t0: float
    drop: float
    submit_end: float
    t_end: float
    runners: list  # SimulatedRunner
    stopped_half: list[str]
    submissions: list[Submission]
    jobs: list[dict]
    events: list[tuple]
    credits: list[tuple]
    dispatcher_log: Path
    broker_messages: int
    cpu_stage: dict
    cpu_use: dict[str, float]
    probe: dict[str, list[float]]
    learned_cost: float


def _arrivals(cfg: SimConfig, users: dict[str, list[int]]) -> list[tuple[float, str, int]]:
    rng = random.Random(cfg.seed)
    capacity = cfg.runners / cfg.durations().mean  # jobs per real second
    loads = {"free": cfg.free_load, "paid": cfg.paid_load, "internal": cfg.internal_load}
    out = []
    for tier, load in loads.items():
        if not users[tier] or load <= 0:
            continue
        rate, t = load * capacity, 0.0
        while True:
            t += rng.expovariate(rate)
            if t >= cfg.duration:
                break
            out.append((t, tier, rng.choice(users[tier])))
    return sorted(out)


class Submitters:
    """Threads that submit the arrival schedule through the real admission, on time if they can."""

    def __init__(self, arrivals: list[tuple[float, str, int]], t0: float, threads: int) -> None:
        self.arrivals, self.t0 = arrivals, t0
        self.records: list[Submission] = []
        self.errors: list[BaseException] = []
        self._next = 0
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._work, name=f"sim-user-{i}", daemon=True) for i in range(threads)]

    def start(self) -> Submitters:
        for t in self._threads:
            t.start()
        return self

    def join(self) -> None:
        for t in self._threads:
            t.join()

    def _work(self) -> None:
        from django.db import connection

        from jobs import services

        try:
            while True:
                with self._lock:
                    if self._next >= len(self.arrivals):
                        return
                    offset, tier, user_id = self.arrivals[self._next]
                    n = self._next
                    self._next += 1
                due = self.t0 + offset
                delay = due - time.time()
                if delay > 0:
                    time.sleep(delay)
                request = services.SubmitRequest(
                    prompt=f"simulated clip {n} for simulated user {user_id}",
                    model=MODEL,
                    seconds=4,
                    width=128,
                    height=128,
                    reference_png=None,
                    request_hash="",
                )
                try:
                    job, _ = services.job_submit(user_id=user_id, request=request, idempotency_key=None)
                    outcome, status, job_id = "accepted", 201, job.pk
                except services.Refused as exc:
                    outcome, status, job_id = exc.refusal.code, exc.refusal.status, None
                self.records.append(Submission(due, time.time(), tier, user_id, outcome, status, job_id))
        except BaseException as exc:
            self.errors.append(exc)
            raise
        finally:
            connection.close()


class Probe:
    """Times chosen functions when simulated runner threads call them: where a slot gap goes. Each target is a
    module attribute its callers look up at call time, so wrapping it changes nothing but adds a clock read."""

    TARGETS = (
        ("jobs.services.dispatch", "next_for_runner", "next_for_runner (lock, snapshot, policy, hand-out)"),
        ("jobs.services.dispatch", "_lock_dispatch", "  advisory lock wait"),
        ("jobs.services.dispatch", "_candidates", "  snapshot reads (_candidates)"),
        ("jobs.services.costs", "observe", "cost model update (own transaction)"),
        ("notifications.services", "push_hint", "push hint after the claim commits"),
    )

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = defaultdict(list)
        self._saved: list[tuple[object, str, object]] = []

    def install(self) -> Probe:
        import importlib

        for module_name, attr, label in self.TARGETS:
            module = importlib.import_module(module_name)
            original = getattr(module, attr)
            self._saved.append((module, attr, original))
            setattr(module, attr, self._wrap(original, label))
        return self

    def uninstall(self) -> None:
        for module, attr, original in reversed(self._saved):
            setattr(module, attr, original)
        self._saved.clear()

    def _wrap(self, func, label: str):
        times = self.times[label]

        def timed(*args, **kwargs):
            if not threading.current_thread().name.startswith("simulated-runner"):
                return func(*args, **kwargs)
            started = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                times.append(time.perf_counter() - started)

        return timed


def _proc_cpu(pid: int | str) -> float | None:
    """CPU seconds (user + system) a process has used, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_cpu() -> float:
    """Busy CPU seconds of the whole machine since boot (all but idle and iowait)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


class CpuMonitor(threading.Thread):
    """Where the machine's CPU went during the run: this process, the dispatcher, this run's Postgres backends."""

    def __init__(self, dispatcher_pid: int, helper_pid: int | None) -> None:
        super().__init__(name="sim-cpu-monitor", daemon=True)
        self.dispatcher_pid = dispatcher_pid
        self.helper_pid = helper_pid
        self._halt = threading.Event()
        self.backends: dict[int, tuple[float, float]] = {}  # pid -> (first seen, last seen) CPU seconds
        self.result: dict[str, float] = {}

    def begin(self) -> CpuMonitor:
        import resource

        self._t = time.monotonic()
        self._machine = _machine_cpu()
        self._self = resource.getrusage(resource.RUSAGE_SELF)
        self._dispatcher = _proc_cpu(self.dispatcher_pid) or 0.0
        self._helper = (_proc_cpu(self.helper_pid) or 0.0) if self.helper_pid else 0.0
        self.start()
        return self

    def run(self) -> None:
        from django.db import connection

        try:
            while not self._halt.wait(1.0):
                self._sample()
        finally:
            connection.close()

    def _sample(self) -> None:
        from django.db import connection

        with connection.cursor() as cur:
            cur.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
            pids = [row[0] for row in cur.fetchall()]
        for pid in pids:
            used = _proc_cpu(pid)
            if used is not None:
                first = self.backends.get(pid, (used, used))[0]
                self.backends[pid] = (first, used)

    def end(self) -> dict[str, float]:
        import resource

        self._halt.set()
        self.join()
        wall = time.monotonic() - self._t
        busy0, busy1 = self._machine, _machine_cpu()
        ru = resource.getrusage(resource.RUSAGE_SELF)
        own = (ru.ru_utime + ru.ru_stime) - (self._self.ru_utime + self._self.ru_stime)
        dispatcher = (_proc_cpu(self.dispatcher_pid) or self._dispatcher) - self._dispatcher
        backends = sum(last - first for first, last in self.backends.values())
        helper = ((_proc_cpu(self.helper_pid) or self._helper) - self._helper) if self.helper_pid else 0.0
        cores = os.cpu_count() or 1
        self.result = {
            "wall_s": wall,
            "machine_busy": (busy1 - busy0) / wall,
            "machine_cores": cores,
            "simulation_process": own / wall,
            "dispatcher": dispatcher / wall,
            "helper_process": helper / wall,
            "postgres_backends": backends / wall,
        }
        self.result["other"] = self.result["machine_busy"] - (own + dispatcher + backends + helper) / wall
        return self.result


class InProcessUsers:
    """The simulated users and cpu stages as threads of this process."""

    pid = None

    def __init__(self, cfg: SimConfig, database_url: str) -> None:
        from gpu_runner.simulated import SimulatedCpuStage

        self.cfg = cfg
        self.cpu = SimulatedCpuStage(poll_seconds=cfg.poll_seconds)
        self.cpu.start()
        self.submitters: Submitters | None = None

    def ready(self, timeout: float) -> None:
        pass

    def start(self, arrivals: list[tuple[float, str, int]], t0: float) -> None:
        self.submitters = Submitters(arrivals, t0, self.cfg.submitters).start()

    def wait_submitted(self) -> list[Submission]:
        self.submitters.join()
        if self.submitters.errors:
            raise RuntimeError("a simulated user failed") from self.submitters.errors[0]
        return self.submitters.records

    def stop(self) -> dict:
        self.cpu.stop()
        self.cpu.join(30)
        if self.cpu.error is not None:
            raise RuntimeError("the simulated cpu stage failed") from self.cpu.error
        return {"moderated": self.cpu.moderated, "reviewed": self.cpu.reviewed}

    def kill(self) -> None:
        self.cpu.stop()


def _helper_main(cfg: SimConfig, database_url: str, inbox, outbox) -> None:
    """The helper process: simulated users and cpu stages (see HelperProcessUsers)."""
    import traceback

    try:
        os.environ.update(scenario_env(cfg))
        os.environ.update(DATABASE_URL=database_url, LOG_LEVEL="WARNING", VIDEOGEN_ROLE="worker")
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "videogen.settings")
        sys.setswitchinterval(cfg.switch_interval)
        from videogen import boot

        boot.setup()
        from gpu_runner.simulated import SimulatedCpuStage
        from moderation import screening

        # This process's cpu stage moderates for real: load its models before saying ready (seconds, and under
        # load more), or the first prompts wait out the measured window.
        screening.check_prompt("simulated clip 0 for simulated user 0")
        cpu = SimulatedCpuStage(poll_seconds=cfg.poll_seconds)
        cpu.start()
        outbox.put(("ready", os.getpid()))
        _, arrivals, t0 = inbox.get()
        submitters = Submitters(arrivals, t0, cfg.submitters).start()
        submitters.join()
        records = [(r.at, r.done, r.tier, r.user_id, r.outcome, r.status, r.job_id) for r in submitters.records]
        outbox.put(("submitted", records, [repr(e) for e in submitters.errors]))
        inbox.get()
        cpu.stop()
        cpu.join(30)
        outbox.put(("stopped", cpu.moderated, cpu.reviewed, repr(cpu.error) if cpu.error else None))
    except BaseException:
        outbox.put(("error", traceback.format_exc()))
        raise


class HelperProcessUsers:
    """The simulated users and cpu stages in a second process (spawned: no connection crosses a fork)."""

    def __init__(self, cfg: SimConfig, database_url: str) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self.inbox, self.outbox = ctx.Queue(), ctx.Queue()
        self.proc = ctx.Process(
            target=_helper_main, args=(cfg, database_url, self.inbox, self.outbox), name="simulated-users", daemon=True
        )
        self.proc.start()
        self.pid = self.proc.pid

    def _get(self, expect: str, timeout: float | None = None) -> tuple:
        import queue

        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                msg = self.outbox.get(timeout=1.0)
                break
            except queue.Empty:
                if not self.proc.is_alive():
                    raise RuntimeError(f"the simulated users process exited ({self.proc.exitcode})") from None
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"the simulated users process did not answer '{expect}'") from None
        if msg[0] != expect:
            raise RuntimeError(f"simulated users process: {msg[0]}:\n" + "\n".join(map(str, msg[1:])))
        return msg

    def ready(self, timeout: float) -> None:
        self._get("ready", timeout)

    def start(self, arrivals: list[tuple[float, str, int]], t0: float) -> None:
        self.inbox.put(("go", arrivals, t0))

    def wait_submitted(self) -> list[Submission]:
        _, records, errors = self._get("submitted")
        if errors:
            raise RuntimeError(f"simulated users failed: {errors}")
        return [Submission(*r) for r in records]

    def stop(self) -> dict:
        self.inbox.put(("stop",))
        _, moderated, reviewed, error = self._get("stopped", 60)
        self.proc.join(30)
        if error:
            raise RuntimeError(f"the simulated cpu stage failed: {error}")
        return {"moderated": moderated, "reviewed": reviewed}

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(10)


def _die_with_parent():
    """For the dispatcher child (Linux): SIGTERM when this process dies, so a crashed or killed simulation never
    leaves a dispatcher running against the next run's database. libc is loaded here, before the fork."""
    try:
        import ctypes

        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _unfinished() -> int:
    from jobs.models import Job

    return Job.objects.filter(state__in=("pending", "queued", "dispatched", "running", "reviewing")).count()


def run(cfg: SimConfig, *, database_url: str, out_dir: Path, say=print) -> RunData:
    """Run the scenario against an already migrated, empty database whose settings match scenario_env(cfg)."""
    from django.db import connection
    from django_q.models import OrmQ

    from gpu_runner.simulated import SimulatedFleet
    from jobs import selectors
    from jobs.accounts import ensure_user
    from jobs.models import CreditEntry, Job, JobEvent, QueueSummary, ShapeCost
    from jobs.services import costs
    from moderation import screening

    # The cpu stage's input moderation is real: load its models now (seconds, the first time in a process),
    # not inside the measured run (this process's, for in-process users; the helper process warms its own).
    screening.check_prompt("simulated clip 0 for simulated user 0")
    selectors.forget_summaries()
    costs.forget_cache()
    ShapeCost.objects.update_or_create(
        model=MODEL, width=128, height=128, seconds=4, defaults={"mean_seconds": cfg.durations().mean, "samples": 100}
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {"free": cfg.free_users, "paid": cfg.paid_users, "internal": cfg.internal_users}
    users = {
        tier: [ensure_user(username=f"simulated-{tier}-{i}", tier=tier)[0].pk for i in range(n)]
        for tier, n in counts.items()
    }
    dispatcher_log = out_dir / "dispatcher.log"
    env = {
        **os.environ,
        **scenario_env(cfg),
        "DATABASE_URL": database_url,
        "VIDEOGEN_ROLE": "worker",
        "PYTHONUNBUFFERED": "1",
        "LOG_LEVEL": "WARNING",
    }
    with open(dispatcher_log, "wb") as log_file:
        dispatcher = subprocess.Popen(
            [sys.executable, "manage.py", "dispatch"],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent(),
        )
    fleet = SimulatedFleet(durations=cfg.durations(), size=cfg.runners, seed=cfg.seed, poll_seconds=cfg.poll_seconds)
    helper = (HelperProcessUsers if cfg.helper_process else InProcessUsers)(cfg, database_url)
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(cfg.switch_interval)
    probe = Probe().install()
    monitor = None
    cpu_use: dict[str, float] = {}
    cpu_stage: dict = {}
    try:
        fleet.start().wait_registered()
        helper.ready(timeout=60)
        deadline = time.monotonic() + 60
        while not QueueSummary.objects.filter(model=MODEL).exists():  # the dispatcher's first pass is done
            if dispatcher.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the dispatcher did not start:\n" + dispatcher_log.read_text(errors="replace"))
            time.sleep(0.05)
        t0 = time.time() + 0.1
        arrivals = _arrivals(cfg, users)
        helper.start(arrivals, t0)
        monitor = CpuMonitor(dispatcher.pid, helper.pid).begin()
        say(f"simulating: {len(arrivals)} submissions over {cfg.duration:.0f} s, {cfg.runners} simulated runners")
        time.sleep(max(0.0, t0 + cfg.drop_at - time.time()))
        half = fleet.runners[cfg.runners - cfg.runners // 2 :]
        drop = time.time()
        fleet.stop(half)
        say(f"capacity drop at {drop - t0:.1f} s: stopped {[r.runner_name for r in half]}")
        submissions = helper.wait_submitted()
        submit_end = time.time()
        while _unfinished() and time.time() < submit_end + cfg.drain and dispatcher.poll() is None:
            time.sleep(0.2)
        t_end = time.time()
        cpu_use = monitor.end()
        say(f"stopping at {t_end - t0:.1f} s ({_unfinished()} jobs unfinished)")
        if dispatcher.poll() is None:
            os.killpg(dispatcher.pid, signal.SIGTERM)
        fleet.stop()
        dispatcher.wait(timeout=20)
        cpu_stage = helper.stop()  # after the runners: the last reviews are done
    finally:
        sys.setswitchinterval(switch_interval)
        probe.uninstall()
        if monitor is not None and monitor.is_alive():
            monitor.end()
        if dispatcher.poll() is None:
            os.killpg(dispatcher.pid, signal.SIGTERM)
        fleet.stop()
        try:
            dispatcher.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(dispatcher.pid, signal.SIGKILL)
            dispatcher.wait()
        helper.kill()
    for problem in fleet.errors:
        raise RuntimeError("a simulated runner failed") from problem
    if dispatcher.returncode not in (0, -signal.SIGTERM):
        raise RuntimeError(f"the dispatcher exited {dispatcher.returncode}:\n" + dispatcher_log.read_text())
    job_cols = ("id", "user_id", "tier", "state", "attempt", "queue", "cost", "created_at", "queued_at")
    jobs = [dict(zip(job_cols, row, strict=True)) for row in Job.objects.order_by("id").values_list(*job_cols)]
    events = [
        (job_id, frm, to, at.timestamp(), attempt, reason)
        for job_id, frm, to, at, attempt, reason in JobEvent.objects.order_by("id").values_list(
            "job_id", "from_state", "to_state", "created_at", "attempt", "reason"
        )
    ]
    credits = list(CreditEntry.objects.exclude(job_id=None).values_list("job_id", "kind"))
    learned_cost = ShapeCost.objects.filter(model=MODEL).values_list("mean_seconds", flat=True).first() or 0.0
    broker_messages = OrmQ.objects.count()
    OrmQ.objects.all().delete()  # hints nobody consumes here (see gpu_runner.simulated): don't keep them
    connection.close()
    return RunData(
        cfg=cfg,
        t0=t0,
        drop=drop,
        submit_end=submit_end,
        t_end=t_end,
        runners=fleet.runners,
        stopped_half=[r.runner_name for r in half],
        submissions=submissions,
        jobs=jobs,
        events=events,
        credits=credits,
        dispatcher_log=dispatcher_log,
        broker_messages=broker_messages,
        cpu_stage=cpu_stage,
        learned_cost=learned_cost,
        cpu_use=cpu_use,
        probe=dict(probe.times),
    )


# --- analysis --------------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1); nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


class Step:
    """A step function built from (time, +1/-1) changes: how many intervals cover a time."""

    def __init__(self, changes: list[tuple[float, int]]) -> None:
        changes.sort()
        self.times = [t for t, _ in changes]
        self.values: list[int] = []
        level = 0
        for _, delta in changes:
            level += delta
            self.values.append(level)

    def at(self, t: float) -> int:
        i = bisect.bisect_right(self.times, t)
        return self.values[i - 1] if i else 0

    def positive_periods(self, start: float, end: float) -> list[tuple[float, float]]:
        out: list[tuple[float, float]] = []
        level, since = self.at(start), start
        for t, value in zip(self.times, self.values, strict=True):
            if t <= start:
                continue
            if t >= end:
                break
            if level > 0 and value <= 0:
                out.append((since, t))
            elif level <= 0 and value > 0:
                since = t
            level = value
        if level > 0 and since < end:
            out.append((since, end))
        return [(a, b) for a, b in out if b > a]


def overlap(a: float, b: float, periods: list[tuple[float, float]], starts: list[float]) -> float:
    """Length of [a, b) inside a sorted list of disjoint periods."""
    if b <= a:
        return 0.0
    total = 0.0
    i = max(0, bisect.bisect_right(starts, a) - 1)
    while i < len(periods) and periods[i][0] < b:
        lo, hi = max(a, periods[i][0]), min(b, periods[i][1])
        if hi > lo:
            total += hi - lo
        i += 1
    return total


@dataclass
class JobTimeline:
    job_id: int
    tier: str
    first_queued: float | None = None
    wait: float = 0.0  # real seconds in queued + dispatched, up to its start (or the end of the run)
    started: float | None = None
    waiting_at_end: bool = False
    queued_spans: list[tuple[float, float]] = field(default_factory=list)  # runnable spans


def timelines(data: RunData) -> dict[int, JobTimeline]:
    backoff = scaled_timers(data.cfg)["RETRY_BACKOFF_SECONDS"]
    by_job: dict[int, list[tuple]] = defaultdict(list)
    for ev in data.events:
        by_job[ev[0]].append(ev)
    tiers = {j["id"]: j["tier"] for j in data.jobs}
    out: dict[int, JobTimeline] = {}
    for job_id, evs in by_job.items():
        tl = JobTimeline(job_id, tiers.get(job_id, "?"))
        for i, (_, _frm, to, at, attempt, reason) in enumerate(evs):
            end = evs[i + 1][3] if i + 1 < len(evs) else data.t_end
            end = min(end, data.t_end)
            if to in ("queued", "dispatched") and at < data.t_end:
                tl.wait += max(0.0, end - at)
                if i + 1 == len(evs):
                    tl.waiting_at_end = True
            if to == "queued":
                if tl.first_queued is None:
                    tl.first_queued = at
                runnable = at
                if reason.startswith("attempt ") and "retry in" in reason:
                    runnable = at + backoff * (2 ** max(0, attempt - 1))
                if end > runnable:
                    tl.queued_spans.append((runnable, end))
            if to == "running" and tl.started is None:
                tl.started = at
        out[job_id] = tl
    return out


def analyse(data: RunData) -> dict:
    cfg, f = data.cfg, data.cfg.time_factor
    tls = timelines(data)
    changes: list[tuple[float, int]] = []
    tier_changes: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for tl in tls.values():
        for a, b in tl.queued_spans:
            changes += [(a, 1), (b, -1)]
            tier_changes[tl.tier] += [(a, 1), (b, -1)]
    backlog = Step(changes)
    periods = backlog.positive_periods(data.t0, data.t_end)
    starts = [p[0] for p in periods]
    backlog_seconds = sum(b - a for a, b in periods)

    # Busy fraction over the periods with a backlog: busy slot-time / slot-time of the runners then in service.
    busy = avail = 0.0
    for runner in data.runners:
        up_from = max(runner.registered_at or data.t0, data.t0)
        up_to = min(runner.stopped_at or data.t_end, data.t_end)
        avail += overlap(up_from, up_to, periods, starts)
        for run in runner.runs:
            end = run.planned_end if run.outcome in ("completed", "failed") else min(run.planned_end, run.woke)
            busy += overlap(max(run.started, up_from), min(end, up_to), periods, starts)
    busy_fraction = busy / avail if avail else float("nan")

    # Slot gaps: a run's end (the simulated GPU finishing) to the same runner's next start, with a backlog then.
    gaps, parts = [], defaultdict(list)
    gaps_by_way: dict[str, list[float]] = defaultdict(list)
    for runner in data.runners:
        runs = sorted(runner.runs, key=lambda r: r.started)
        for prev, nxt in itertools.pairwise(runs):
            if prev.outcome not in ("completed", "failed") or backlog.at(prev.planned_end) <= 0:
                continue
            gap = nxt.started - prev.planned_end
            gaps.append(gap)
            gaps_by_way[nxt.via if prev.outcome == "completed" else "after failure"].append(gap)
            parts["wake (timer and GIL latency)"].append(prev.woke - prev.planned_end)
            parts["complete + take next (transaction)"].append(prev.done - prev.woke)
            parts["pickup (poll / dispatcher)"].append(nxt.claim_began - prev.done)
            parts["claim (transaction)"].append(nxt.started - nxt.claim_began)

    # Waits (unscaled): under contention = the job found a backlog when it first queued.
    waits: dict[str, list[float]] = defaultdict(list)
    waits_contended: dict[str, list[float]] = defaultdict(list)
    wait_points: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for tl in tls.values():
        if tl.first_queued is None:
            continue
        w = tl.wait / f
        waits[tl.tier].append(w)
        if backlog.at(tl.first_queued - 1e-6) > 0:
            waits_contended[tl.tier].append(w)
        wait_points[tl.tier].append(((tl.started or data.t_end) - data.t0, w))

    # Admission.
    refusals: Counter = Counter()
    shed_phase: Counter = Counter()
    first_shed_after_drop: dict[str, float] = {}
    accepted = Counter()
    for s in data.submissions:
        if s.outcome == "accepted":
            accepted[s.tier] += 1
            continue
        refusals[(s.tier, s.outcome)] += 1
        if s.outcome == "capacity_exceeded":
            phase = "after drop" if s.at >= data.drop else "before drop"
            shed_phase[(s.tier, phase)] += 1
            if s.at >= data.drop:
                first_shed_after_drop.setdefault(s.tier, s.at - data.drop)
    lateness = [s.done - s.at for s in data.submissions]

    free_p95 = pct(waits_contended["free"], 0.95)
    paid_p95 = pct(waits_contended["paid"], 0.95)
    free_tier = cfg.tiers["free"]
    figures = {
        "busy_fraction": round(busy_fraction, 4),
        "paid_p95_wait_s": round(paid_p95, 1),
        "free_p95_wait_s": round(free_p95, 1),
        "max_free_wait_s": round(max(waits["free"], default=0.0), 1),
        "aging_bound_s": free_tier["AGING_SECONDS"],
        "shed_free": refusals[("free", "capacity_exceeded")],
        "shed_paid": refusals[("paid", "capacity_exceeded")],
        "slot_gap_p99_ms": round(pct(gaps, 0.99) * 1000, 1),
    }
    return {
        "figures": figures,
        "timelines": tls,
        "backlog": backlog,
        "tier_backlog": {t: Step(c) for t, c in tier_changes.items()},
        "periods": periods,
        "backlog_seconds": backlog_seconds,
        "busy_seconds": busy,
        "available_seconds": avail,
        "gaps": gaps,
        "gap_parts": parts,
        "gaps_by_way": gaps_by_way,
        "waits": waits,
        "waits_contended": waits_contended,
        "wait_points": wait_points,
        "refusals": refusals,
        "shed_phase": shed_phase,
        "first_shed_after_drop": first_shed_after_drop,
        "accepted": accepted,
        "lateness": lateness,
    }


def invariants(data: RunData) -> list[tuple[str, bool, str]]:
    """(name, ok, detail) for each invariant the run must keep."""
    out = []
    states = Counter(j["state"] for j in data.jobs)
    stopped_queues = {r.queue for r in data.runners}
    bad = [
        j
        for j in data.jobs
        if j["state"] not in ("succeeded", "failed", "rejected", "cancelled", "queued")
        and not (j["state"] == "dispatched" and j["queue"] in stopped_queues)
    ]
    out.append(
        (
            "every job ended, or is queued (or dispatched to a stopped runner, for the reaper)",
            not bad,
            f"final states {dict(states)}" + (f"; stuck: {[(j['id'], j['state']) for j in bad[:10]]}" if bad else ""),
        )
    )
    accepted = {s.job_id for s in data.submissions if s.outcome == "accepted"}
    known = {j["id"] for j in data.jobs}
    out.append(
        (
            "no job lost: every accepted submission is a job, and every job was accepted",
            accepted == known,
            f"{len(accepted)} accepted, {len(known)} jobs",
        )
    )
    terminal_events = Counter(ev[0] for ev in data.events if ev[2] in ("succeeded", "failed", "rejected", "cancelled"))
    succeeded_events = Counter(ev[0] for ev in data.events if ev[2] == "succeeded")
    twice = [j for j, n in succeeded_events.items() if n > 1]
    multi_terminal = [j for j, n in terminal_events.items() if n > 1]
    out.append(
        (
            "no job succeeded twice, one terminal state per job",
            not twice and not multi_terminal,
            f"{len(twice)} succeeded twice, {len(multi_terminal)} with several terminal transitions",
        )
    )
    reserve = Counter(j for j, kind in data.credits if kind == "reserve")
    settle = Counter(j for j, kind in data.credits if kind in ("charge", "release"))
    charged = {j for j, kind in data.credits if kind == "charge"}
    problems = []
    for job in data.jobs:
        jid, terminal = job["id"], job["state"] in ("succeeded", "failed", "rejected", "cancelled")
        if reserve[jid] > 1 or settle[jid] > 1:
            problems.append((jid, "several reserves or settlements"))
        elif reserve[jid] and terminal and settle[jid] != 1:
            problems.append((jid, "finished without its one settlement"))
        elif settle[jid] and not reserve[jid]:
            problems.append((jid, "settled without a reservation"))
        elif not terminal and settle[jid]:
            problems.append((jid, "settled while unfinished"))
        elif (jid in charged) != (job["state"] == "succeeded" and reserve[jid] > 0):
            problems.append((jid, "charge does not match success"))
    metered_done = sum(
        1 for j in data.jobs if reserve[j["id"]] and j["state"] in ("succeeded", "failed", "rejected", "cancelled")
    )
    out.append(
        (
            "exactly one credit settlement per finished metered job (charge iff succeeded)",
            not problems,
            f"{metered_done} finished metered jobs, {sum(settle.values())} settlements"
            + (f"; problems {problems[:10]}" if problems else ""),
        )
    )
    runs_by_job = defaultdict(list)
    for runner in data.runners:
        for run in runner.runs:
            runs_by_job[run.job_id].append(run)
    overlapping = []
    for job_id, runs in runs_by_job.items():
        runs.sort(key=lambda r: r.started)
        for a, b in itertools.pairwise(runs):
            if b.started < max(a.done, a.woke) or b.attempt <= a.attempt:
                overlapping.append(job_id)
    out.append(
        (
            "no job ran twice concurrently (attempts sequential, each on one runner at a time)",
            not overlapping,
            f"{sum(len(r) for r in runs_by_job.values())} runs of {len(runs_by_job)} jobs"
            + (f"; overlapping {overlapping[:10]}" if overlapping else ""),
        )
    )
    return out


def targets(figures: dict) -> list[tuple[str, str, bool]]:
    """(key, description, met) for each target of the issue."""
    f = figures
    scale = f.get("dispatch_ms_per_job_100k")
    return [
        ("busy", f"busy_fraction {f['busy_fraction']} >= 0.98 while a backlog exists", f["busy_fraction"] >= 0.98),
        (
            "paid_vs_free",
            f"paid p95 wait {f['paid_p95_wait_s']} s <= 1/4 of free p95 {f['free_p95_wait_s']} s (contended)",
            f["paid_p95_wait_s"] <= f["free_p95_wait_s"] / 4,
        ),
        (
            "aging",
            f"max free wait {f['max_free_wait_s']} s <= aging bound {f['aging_bound_s']:g} s",
            f["max_free_wait_s"] <= f["aging_bound_s"],
        ),
        (
            "shed_free_first",
            f"after the drop free work is shed before paid (shed_free {f['shed_free']}, shed_paid {f['shed_paid']})",
            bool(f.get("free_shed_first")),
        ),
        ("slot_gap", f"slot_gap_p99_ms {f['slot_gap_p99_ms']} <= 50", f["slot_gap_p99_ms"] <= 50),
        ("dispatch_scale", f"dispatch_ms_per_job_100k {scale} <= 5", scale is not None and scale <= 5),
    ]


# --- report ----------------------------------------------------------------------------------------------


def _ms(values: list[float]) -> str:
    if not values:
        return "n/a"
    return (
        f"p50 {pct(values, 0.5) * 1000:.1f}  p90 {pct(values, 0.9) * 1000:.1f}  p99 {pct(values, 0.99) * 1000:.1f}"
        f"  max {max(values) * 1000:.1f} ms  (n={len(values)})"
    )


def _s(values: list[float]) -> str:
    if not values:
        return "n/a"
    return (
        f"mean {statistics.fmean(values):7.1f}  p50 {pct(values, 0.5):7.1f}  p95 {pct(values, 0.95):7.1f}"
        f"  max {max(values):7.1f} s  (n={len(values)})"
    )


def report(data: RunData, res: dict, figures: dict, checks, scale_text: str) -> str:
    from jobs.models import TRANSITIONS

    cfg, f = data.cfg, data.cfg.time_factor
    d = cfg.durations()
    lines = ["videogen fleet simulation (SIMULATED backend: no GPU, no frames)", "=" * 72]
    cpu = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((ln.split(":", 1)[1].strip() for ln in cpu.splitlines() if ln.startswith("model name")), "?")
    lines.append(
        f"machine     {platform.node()} · {os.cpu_count()} cores · {model} · Python {platform.python_version()}"
    )
    lines.append(
        f"time factor {f:g}: real seconds = simulated seconds x {f:g} (1 real s = {1 / f:g} simulated s); "
        "waits below are simulated seconds, slot gaps real ms"
    )
    lines.append(
        f"durations   simulated lognormal p50 {cfg.p50:g} s, p99 {cfg.p99:g} s (sigma {d.sigma:.3f}, mean "
        f"{d.mean / f:.1f} s) -> real mean {d.mean:.3f} s; injected failure rate {cfg.fail_rate:g}"
    )
    capacity = cfg.runners / d.mean
    lines.append(
        f"fleet       {cfg.runners} simulated runners x 1 slot (capacity {capacity:.2f} jobs/s real); "
        f"{len(data.stopped_half)} stopped gracefully at {data.drop - data.t0:.1f} s real "
        f"({(data.drop - data.t0) / f:.0f} s simulated): {', '.join(data.stopped_half)}"
    )
    lines.append(
        f"users       free {cfg.free_users} (load {cfg.free_load:g}x), "
        f"paid {cfg.paid_users} (load {cfg.paid_load:g}x), "
        f"internal {cfg.internal_users} (load {cfg.internal_load:g}x) of the initial capacity, Poisson, "
        f"{cfg.submitters} submitter threads, seed {cfg.seed}"
    )
    lines.append(
        "harness     simulated runners are threads of this process; simulated users and cpu stages "
        + ("threads of a second process" if cfg.helper_process else "threads of the same process")
        + f"; GIL switch interval {cfg.switch_interval * 1000:g} ms; pickup poll {cfg.poll_seconds * 1000:g} ms"
    )
    lines.append(
        f"cost model  seeded with the simulated mean ({d.mean:.3f} s real per job, 100 samples); learning rate "
        f"{cfg.cost_learning_rate:g}; learned at the end: {data.learned_cost:.3f} s"
    )
    lines.append(
        f"run         submissions for {cfg.duration:g} s real, drained until {data.t_end - data.t0:.1f} s "
        f"(drain limit {cfg.drain:g} s); backlog existed {res['backlog_seconds']:.1f} s real"
    )
    lines.append("tiers (simulated s)  weight  wait bound  aging   caps (0 = none)  daily credits")
    for tier in TIERS:
        t = cfg.tiers[tier]
        lines.append(
            f"  {tier:<18} {t['WEIGHT']:>6g}  {t['WAIT_BOUND_SECONDS']:>10g}  {t['AGING_SECONDS']:>5g}   "
            f"{'/'.join(str(v) for v in TIER_CAPS.values()):<15}  {TIER_CREDITS[tier]}"
        )
    lines.append(
        "timers (real s, = production value x factor, floored): "
        + ", ".join(f"{k}={v:g}" for k, v in scaled_timers(cfg).items())
    )
    lines.append(f"environment {' '.join(f'{k}={v}' for k, v in sorted(scenario_env(cfg).items()))}")

    lines += ["", "state machine", "-" * 72]
    for frm, tos in TRANSITIONS.items():
        lines.append(f"  {frm:<10} -> {', '.join(sorted(tos)) or '(terminal)'}")
    transitions = Counter((ev[1] or "∅", ev[2]) for ev in data.events)
    lines.append("  transitions taken: " + ", ".join(f"{a}->{b} {n}" for (a, b), n in sorted(transitions.items())))
    by_tier = defaultdict(Counter)
    for j in data.jobs:
        by_tier[j["tier"]][j["state"]] += 1
    for tier in TIERS:
        lines.append(f"  final states {tier:<8} {dict(sorted(by_tier[tier].items()))}")
    lines.append(
        f"  simulated cpu stages: {data.cpu_stage['moderated']} moderated, {data.cpu_stage['reviewed']} reviewed; "
        f"{data.broker_messages} django-q2 hints left unconsumed (the simulation polls the job table)"
    )

    lines += ["", "admission", "-" * 72]
    subs = Counter(s.tier for s in data.submissions)
    for tier in TIERS:
        refused = {code: n for (t, code), n in sorted(res["refusals"].items()) if t == tier}
        lines.append(f"  {tier:<8} submitted {subs[tier]:>5}  accepted {res['accepted'][tier]:>5}  refused {refused}")
    for tier in TIERS:
        before, after = res["shed_phase"][(tier, "before drop")], res["shed_phase"][(tier, "after drop")]
        first = res["first_shed_after_drop"].get(tier)
        first_txt = f", first {first / f:.0f} s simulated after the drop" if first is not None else ""
        lines.append(f"  shed (503) {tier:<8} before drop {before:>5}, after drop {after:>5}{first_txt}")
    lines.append(f"  submitter lateness (due -> answered): {_ms(res['lateness'])}")

    lines += ["", "waits (simulated seconds; time in queued + dispatched, jobs still waiting counted so far)", "-" * 72]
    for tier in TIERS:
        lines.append(f"  {tier:<8} all        {_s(res['waits'][tier])}")
        lines.append(f"  {tier:<8} contended  {_s(res['waits_contended'][tier])}")

    lines += ["", "GPU slots (real time)", "-" * 72]
    lines.append(
        f"  busy {res['busy_seconds']:.1f} of {res['available_seconds']:.1f} slot-seconds available while a backlog "
        f"existed: busy_fraction {figures['busy_fraction']}"
    )
    lines.append(f"  slot gap (GPU end -> next start, same runner, backlog waiting): {_ms(res['gaps'])}")
    for way, values in sorted(res["gaps_by_way"].items()):
        lines.append(f"    next job by {way:<13} {_ms(values)}")
    for part, values in res["gap_parts"].items():
        lines.append(f"    {part:<36} {_ms(values)}")
    lines.append("  inside the runner threads' calls (all calls, not only those in a counted gap):")
    for label, values in data.probe.items():
        lines.append(f"    {label:<52} {_ms(values)}")
    runs = [r for runner in data.runners for r in runner.runs]
    lines.append(f"  runs by outcome: {dict(Counter(r.outcome for r in runs))}")
    u = data.cpu_use
    if u:
        lines.append(
            f"  CPU during the run, in cores of {u['machine_cores']}: machine busy {u['machine_busy']:.2f} = this "
            f"process (simulated runners{'' if cfg.helper_process else ', users, cpu stages'}) "
            f"{u['simulation_process']:.2f} + users and cpu stages process {u['helper_process']:.2f} + dispatcher "
            f"{u['dispatcher']:.2f} + this run's Postgres backends {u['postgres_backends']:.2f} + other "
            f"{u['other']:.2f} (Postgres background, anything else on the machine)"
        )

    lines += ["", "dispatcher at scale (benchmarks/dispatch_scale.py)", "-" * 72, scale_text.rstrip()]

    lines += ["", "invariants", "-" * 72]
    for name, ok, detail in checks:
        lines.append(f"  [{'ok' if ok else 'FAILED'}] {name}: {detail}")
    lines += ["", "targets", "-" * 72]
    for _, name, ok in targets(figures):
        lines.append(f"  [{'met' if ok else 'NOT MET'}] {name}")
    return "\n".join(lines) + "\n"


def plot(data: RunData, res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg, f = data.cfg, data.cfg.time_factor
    span = data.t_end - data.t0
    grid = [data.t0 + span * i / 600 for i in range(601)]
    x = [(t - data.t0) / f / 60 for t in grid]  # simulated minutes
    drop_x = (data.drop - data.t0) / f / 60
    colors = {"free": "tab:blue", "paid": "tab:orange", "internal": "tab:green"}
    fig, axes = plt.subplots(3, 1, figsize=(11, 11), sharex=True)

    ax = axes[0]
    for tier, step in sorted(res["tier_backlog"].items()):
        ax.plot(x, [step.at(t) for t in grid], label=f"{tier} queued", color=colors.get(tier))
    ax.plot(x, [res["backlog"].at(t) for t in grid], label="all queued", color="black", lw=0.8)
    ax.set_ylabel("queue length (jobs)")
    ax.set_title(f"SIMULATED fleet: {cfg.runners} -> {cfg.runners - len(data.stopped_half)} runners, time factor {f:g}")

    ax = axes[1]
    for tier, points in sorted(res["wait_points"].items()):
        if points:
            ax.scatter([p[0] / f / 60 for p in points], [p[1] for p in points], s=4, alpha=0.5, color=colors.get(tier))
            # Rolling p95 over windows of 1/40 of the run.
            window = span / 40
            xs, ys = [], []
            for i in range(40):
                lo, hi = window * i, window * (i + 1)
                inside = [w for t, w in points if lo <= t < hi]
                if inside:
                    xs.append((lo + hi) / 2 / f / 60)
                    ys.append(pct(inside, 0.95))
            ax.plot(xs, ys, color=colors.get(tier), label=f"{tier} wait (p95 per window)")
    ax.axhline(cfg.tiers["free"]["AGING_SECONDS"], color="tab:red", ls=":", label="free aging bound")
    ax.axhline(cfg.tiers["free"]["WAIT_BOUND_SECONDS"], color="tab:purple", ls=":", label="free wait bound (503)")
    ax.set_ylabel("wait (simulated s), by start time")

    ax = axes[2]
    busy = Step(
        [
            c
            for runner in data.runners
            for r in runner.runs
            for c in ((r.started, 1), (r.planned_end if r.outcome in ("completed", "failed") else r.woke, -1))
        ]
    )
    live = Step(
        [c for r in data.runners for c in (((r.registered_at or data.t0), 1), ((r.stopped_at or data.t_end), -1))]
    )
    ax.plot(x, [busy.at(t) for t in grid], label="busy slots", color="black", lw=0.8)
    ax.plot(x, [live.at(t) for t in grid], label="slots in service", color="gray", ls="--")
    ax.set_ylabel("slots")
    ax2 = ax.twinx()
    for tier in ("free", "paid"):
        times = sorted(s.at for s in data.submissions if s.tier == tier and s.outcome == "capacity_exceeded")
        ax2.plot(
            [(t - data.t0) / f / 60 for t in times], range(1, len(times) + 1), color=colors[tier], label=f"{tier} shed"
        )
    ax2.set_ylabel("cumulative 503 capacity_exceeded")
    ax2.legend(loc="center right")
    ax.set_xlabel("simulated minutes")
    for ax in axes:
        ax.axvline(drop_x, color="tab:red", lw=1.5, label="capacity drop")
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- the dispatcher at scale --------------------------------------------------------------------------------


def run_scale_benchmark(size: int, database: str) -> tuple[float | None, str]:
    """benchmarks/dispatch_scale.py at one size: (decision ms per dispatched job, its report)."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "dispatch_scale.py"), "--sizes", str(size), "--database", database],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        return None, f"dispatch_scale.py failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    lines = proc.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    return result["sizes"][str(size)]["decision_ms_per_job_p50"], "\n".join(lines[:-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    c = SimConfig()
    parser.add_argument("--runners", type=int, default=c.runners)
    parser.add_argument("--time-factor", type=float, default=c.time_factor)
    parser.add_argument("--duration", type=float, default=c.duration, help="real seconds of submissions")
    parser.add_argument("--drain", type=float, default=c.drain, help="real seconds at most to drain afterwards")
    parser.add_argument("--p50", type=float, default=c.p50, help="simulated seconds")
    parser.add_argument("--p99", type=float, default=c.p99, help="simulated seconds")
    parser.add_argument("--fail-rate", type=float, default=c.fail_rate)
    parser.add_argument("--free-users", type=int, default=c.free_users)
    parser.add_argument("--paid-users", type=int, default=c.paid_users)
    parser.add_argument("--internal-users", type=int, default=c.internal_users)
    parser.add_argument("--free-load", type=float, default=c.free_load)
    parser.add_argument("--paid-load", type=float, default=c.paid_load)
    parser.add_argument("--internal-load", type=float, default=c.internal_load)
    parser.add_argument("--seed", type=int, default=c.seed)
    parser.add_argument("--cost-learning-rate", type=float, default=c.cost_learning_rate)
    parser.add_argument("--in-process-users", action="store_true", help="users and cpu stages as threads here")
    parser.add_argument("--switch-interval", type=float, default=c.switch_interval, help="this process's GIL, s")
    for tier in ("free", "paid"):
        for name in ("WAIT_BOUND_SECONDS", "AGING_SECONDS"):
            flag = f"--{tier}-{name.removesuffix('_SECONDS').lower().replace('_', '-')}"
            parser.add_argument(flag, type=float, default=TIER_DEFAULTS[tier][name], help="simulated seconds")
    parser.add_argument("--database", default="postgres://postgres@127.0.0.1:5432/videogen_sim")
    parser.add_argument("--scale-database", default="postgres://postgres@127.0.0.1:5432/videogen_dispatch_bench")
    parser.add_argument("--scale-size", type=int, default=100_000, help="0 skips the dispatcher scale benchmark")
    parser.add_argument("--out", default=str(ROOT / "var" / "simulate"))
    args = parser.parse_args()
    cfg = SimConfig(
        runners=args.runners,
        time_factor=args.time_factor,
        duration=args.duration,
        drain=args.drain,
        p50=args.p50,
        p99=args.p99,
        fail_rate=args.fail_rate,
        free_users=args.free_users,
        paid_users=args.paid_users,
        internal_users=args.internal_users,
        free_load=args.free_load,
        paid_load=args.paid_load,
        internal_load=args.internal_load,
        seed=args.seed,
        switch_interval=args.switch_interval,
        helper_process=not args.in_process_users,
        cost_learning_rate=args.cost_learning_rate,
    )
    for tier in ("free", "paid"):
        cfg.tiers[tier]["WAIT_BOUND_SECONDS"] = getattr(args, f"{tier}_wait_bound")
        cfg.tiers[tier]["AGING_SECONDS"] = getattr(args, f"{tier}_aging")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    os.environ.update(scenario_env(cfg))
    os.environ.update(DATABASE_URL=args.database, LOG_LEVEL="WARNING", VIDEOGEN_ROLE="worker")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "videogen.settings")
    fresh_db.recreate(args.database)

    from videogen import boot

    boot.setup()
    data = run(cfg, database_url=args.database, out_dir=out, say=lambda m: print(m, file=sys.stderr))
    res = analyse(data)
    figures = res["figures"]
    after = res["first_shed_after_drop"]
    figures["free_shed_first"] = "free" in after and after.get("paid", math.inf) > after["free"]
    checks = invariants(data)

    scale_ms, scale_text = None, "(skipped: --scale-size 0)"
    if args.scale_size:
        print(f"dispatcher scale benchmark at {args.scale_size} queued jobs ...", file=sys.stderr)
        scale_ms, scale_text = run_scale_benchmark(args.scale_size, args.scale_database)
    figures["dispatch_ms_per_job_100k"] = None if scale_ms is None else round(scale_ms, 3)

    text = report(data, res, figures, checks, scale_text)
    (out / "report.txt").write_text(text)
    plot(data, res, out / "plot.png")
    print(text)
    print(f"report {out / 'report.txt'} · plot {out / 'plot.png'} · dispatcher log {data.dispatcher_log}")
    summary = {
        **figures,
        "time_factor": cfg.time_factor,
        "runners": cfg.runners,
        "submitted": len(data.submissions),
        "accepted": sum(res["accepted"].values()),
        "succeeded": sum(1 for j in data.jobs if j["state"] == "succeeded"),
        "invariants_ok": all(ok for _, ok, _ in checks),
        "targets_met": {key: ok for key, _, ok in targets(figures)},
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

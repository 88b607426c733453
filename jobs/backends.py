"""Remote generation backends: the pools an operator configures, and what each server's dialect says and means.

A remote pool is a server with an OpenAI-style `/v1/videos` (another videogen installation, vLLM-Omni, SGLang
Diffusion, FastVideo, TensorRT-LLM, Aquiles-Image) driven by `manage.py remote_worker POOL`. It offers
`concurrency` slots to the dispatcher like any runner (same policy, fairness, credits, admission), and the
models it serves join the catalogue. Pools are read from the TOML file REMOTE_POOLS_FILE:

    [pools.peer]
    base_url = "https://videos.example.net/v1"
    api_key_env = "PEER_API_KEY"          # or api_key = "..." (the environment is better)
    dialect = "openai-videos"
    concurrency = 4
    webhook_secret_env = "PEER_WEBHOOK_SECRET"   # whsec_... (Standard Webhooks); or webhook_secret
    poll_seconds = 2.0                    # every in-flight remote job is polled this often (the truth)
    [pools.peer.models.wan-tiny]          # our name; `remote_model` if the server calls it otherwise
    sizes = ["128x128"]                   # only for a model the catalogue does not know yet
    seconds = [4]

Everything here is plain data and pure functions: what a create looks like, how a status reads, what a DELETE
does. The HTTP lives in gpu_runner.remote.
"""

from __future__ import annotations

import functools
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

# A remote pool's queue: the dispatcher sends it no broker message (its worker reads the job table).
REMOTE_QUEUE_PREFIX = "remote."

# Our phases for a remote job. `unknown`: a status this dialect does not define (polled on, never trusted).
QUEUED, RUNNING, COMPLETED, FAILED, UNKNOWN = "queued", "running", "completed", "failed", "unknown"


@dataclass(frozen=True)
class Dialect:
    name: str
    # How a create is sent: "multipart" or "json".
    create_as: str
    statuses: dict[str, str]
    # Whether the server's `progress` is real (moves with the work) or only 0 then 100 / simulated / absent.
    real_progress: bool
    # What DELETE does: "aborts" (stops the work), "queued_only" (stops it only before it starts), "discards"
    # (forgets the record; the work goes on and its result is thrown away).
    cancel: str
    # Whether a create sent again with the same Idempotency-Key answers the same remote job: then a crash between
    # the remote create and our record of it is reconciled by sending it again.
    idempotent_create: bool = False
    # How it signs webhooks: "standard" (Standard Webhooks, as videogen does) or "none".
    webhooks: str = "none"


_OPENAI = {"queued": QUEUED, "in_progress": RUNNING, "completed": COMPLETED, "failed": FAILED, "cancelled": FAILED}

DIALECTS: dict[str, Dialect] = {
    # Generic OpenAI Videos API, including another videogen installation (which honours Idempotency-Key and
    # signs its webhooks per Standard Webhooks).
    "openai-videos": Dialect(
        "openai-videos", "multipart", _OPENAI, real_progress=True, cancel="aborts", idempotent_create=True,
        webhooks="standard",
    ),
    "vllm-omni": Dialect("vllm-omni", "multipart", _OPENAI, real_progress=False, cancel="aborts"),
    # Never reports in_progress: queued until it is done.
    "sglang": Dialect(
        "sglang", "json", {"queued": QUEUED, "completed": COMPLETED, "failed": FAILED}, False, "discards"
    ),
    "fastvideo": Dialect("fastvideo", "multipart", _OPENAI, real_progress=False, cancel="queued_only"),
    # Creates answer 202; `error` may be a plain string; no progress.
    "tensorrt-llm": Dialect(
        "tensorrt-llm", "json", {"queued": QUEUED, "completed": COMPLETED, "failed": FAILED}, False, "aborts"
    ),
    # `processing` instead of in_progress; its progress is simulated.
    "aquiles": Dialect(
        "aquiles", "json", {"queued": QUEUED, "processing": RUNNING, "completed": COMPLETED, "failed": FAILED},
        real_progress=False, cancel="queued_only",
    ),
}  # fmt: skip


@dataclass(frozen=True)
class RemoteModel:
    name: str  # ours
    remote_model: str  # the server's
    sizes: tuple[str, ...] = ()
    seconds: tuple[int, ...] = ()


@dataclass(frozen=True)
class Pool:
    name: str
    base_url: str
    api_key: str
    dialect: Dialect
    concurrency: int
    models: dict[str, RemoteModel]
    webhook_secret: str = ""
    poll_seconds: float = 2.0
    # A remote job not finished after this many times our expected run time for its shape (at least
    # stuck_min_seconds) is given up: cancelled there, retried here.
    stuck_factor: float = 10.0
    stuck_min_seconds: float = 600.0
    timeout_seconds: float = 30.0
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def queue(self) -> str:
        """The queue the dispatcher addresses this pool's jobs to (the job table is read, no broker message)."""
        return f"{REMOTE_QUEUE_PREFIX}{self.name}"

    def remote_model(self, model: str) -> str:
        entry = self.models.get(model)
        return entry.remote_model if entry else model


class PoolConfigError(ValueError):
    pass


def _secret(spec: dict, key: str) -> str:
    if spec.get(f"{key}_env"):
        return os.environ.get(str(spec[f"{key}_env"]), "")
    return str(spec.get(key, ""))


def parse(text: str) -> dict[str, Pool]:
    """Pools from the TOML text; a mistake names the pool and the key."""
    data = tomllib.loads(text)
    pools: dict[str, Pool] = {}
    for name, spec in (data.get("pools") or {}).items():
        where = f"pool {name!r}"
        if not name.replace("-", "").replace("_", "").isalnum():
            raise PoolConfigError(f"{where}: a pool name is letters, digits, - and _")
        dialect = DIALECTS.get(spec.get("dialect", "openai-videos"))
        if dialect is None:
            raise PoolConfigError(f"{where}: dialect must be one of {', '.join(DIALECTS)}")
        base_url = str(spec.get("base_url", "")).rstrip("/")
        if not base_url.startswith(("http://", "https://")):
            raise PoolConfigError(f"{where}: base_url must be an http(s) URL ending in /v1")
        concurrency = int(spec.get("concurrency", 1))
        if not 1 <= concurrency <= 1000:
            raise PoolConfigError(f"{where}: concurrency must be 1..1000")
        models = {}
        for model, m in (spec.get("models") or {}).items():
            models[model] = RemoteModel(
                name=model,
                remote_model=str(m.get("remote_model", model)),
                sizes=tuple(str(s) for s in m.get("sizes", ())),
                seconds=tuple(int(s) for s in m.get("seconds", ())),
            )
        if not models:
            raise PoolConfigError(f"{where}: list the models it serves ([pools.{name}.models.<name>])")
        pools[name] = Pool(
            name=name,
            base_url=base_url,
            api_key=_secret(spec, "api_key"),
            dialect=dialect,
            concurrency=concurrency,
            models=models,
            webhook_secret=_secret(spec, "webhook_secret"),
            poll_seconds=float(spec.get("poll_seconds", 2.0)),
            stuck_factor=float(spec.get("stuck_factor", 10.0)),
            stuck_min_seconds=float(spec.get("stuck_min_seconds", 600.0)),
            timeout_seconds=float(spec.get("timeout_seconds", 30.0)),
        )
    return pools


@functools.cache
def _load(path: str) -> dict[str, Pool]:
    if not path:
        return {}
    return parse(Path(path).read_text(encoding="utf-8"))


def pools() -> dict[str, Pool]:
    return _load(settings.REMOTE_POOLS_FILE)


def get(name: str) -> Pool | None:
    return pools().get(name)


def pool_of_runner(runner_id: str) -> Pool | None:
    """The pool a job's runner belongs to (remote workers are named remote:<pool>@host:pid)."""
    if not runner_id.startswith("remote:"):
        return None
    return get(runner_id[len("remote:") :].split("@", 1)[0])


# --- what a server says -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteStatus:
    phase: str  # QUEUED, RUNNING, COMPLETED, FAILED or UNKNOWN
    raw: str  # the server's own word, for the logs
    progress: int | None  # 0..100 when the server reports real progress
    error: str  # why it failed, as the server put it (never shown to users)


def read_status(dialect: Dialect, body: object) -> RemoteStatus:
    """A GET /videos/{id} answer, whatever its shape: an unknown status or a string error never raises."""
    if not isinstance(body, dict):
        return RemoteStatus(UNKNOWN, type(body).__name__, None, "")
    raw = str(body.get("status", ""))[:64]
    phase = dialect.statuses.get(raw, UNKNOWN)
    progress = None
    if dialect.real_progress:
        value = body.get("progress")
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            progress = max(0, min(100, int(value)))
    return RemoteStatus(phase, raw, progress, _error_text(body.get("error")))


def _error_text(error: object) -> str:
    if error is None:
        return ""
    if isinstance(error, str):
        return error[:500]
    if isinstance(error, dict):
        parts = [str(error.get(k)) for k in ("code", "message") if error.get(k)]
        return ": ".join(parts)[:500]
    return str(error)[:500]


def remote_id(body: object) -> str:
    """The id a create answered ("" when it gave none)."""
    if isinstance(body, dict) and isinstance(body.get("id"), str):
        return body["id"][:200]
    return ""


def create_fields(pool: Pool, *, model: str, prompt: str, size: str, seconds: int) -> dict[str, str]:
    """The create's fields (sent as form fields or JSON per dialect). The reference image goes alongside."""
    return {"model": pool.remote_model(model), "prompt": prompt, "size": size, "seconds": str(seconds)}


def estimated_progress(elapsed: float, expected: float) -> int:
    """Progress from our own timings for the shape, for servers that report none: never 100 before the end."""
    if expected <= 0:
        return 0
    return max(0, min(95, int(100 * elapsed / expected)))

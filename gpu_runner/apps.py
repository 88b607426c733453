from __future__ import annotations

from django.apps import AppConfig
from django.conf import settings


class GpuRunnerConfig(AppConfig):
    name = "gpu_runner"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Only workers of the gpu cluster offer slots; cpu workers and web processes never register.
        if settings.RUNNER_QUEUE.startswith("gpu"):
            from django_q.signals import post_spawn

            from gpu_runner.worker import on_worker_spawn

            post_spawn.connect(on_worker_spawn, dispatch_uid="gpu_runner.worker")

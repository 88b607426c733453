from __future__ import annotations

import shutil

from django.core.management.base import BaseCommand

from gpu_runner import registry


class Command(BaseCommand):
    help = "Build the tiny random Wan pipeline (the default model) into MODELS_DIR, unless it is there."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--force", action="store_true", help="rebuild even if it exists")

    def handle(self, *args, force: bool = False, **options) -> None:
        from gpu_runner.tiny_model import build_tiny_wan

        for entry in registry.entries().values():
            if not entry.builtin:
                continue
            if entry.path.exists() and not force:
                self.stdout.write(f"{entry.name}: already at {entry.path}")
                continue
            if force and entry.path.exists():
                shutil.rmtree(entry.path)
            build_tiny_wan(entry.path)
            self.stdout.write(f"{entry.name}: built at {entry.path}")

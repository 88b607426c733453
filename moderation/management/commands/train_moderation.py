"""Train the prompt classifier on the labelled data (or load the trained one kept under MODERATION_CACHE_DIR), so
that workers start with it instead of training on their first job."""

from __future__ import annotations

import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from moderation import textmodel


class Command(BaseCommand):
    help = "Train the text moderation model once per host (or load the one already trained for this data)."

    def handle(self, *args, **options) -> None:
        started = time.perf_counter()
        rows = textmodel.examples(Path(settings.MODERATION_TEXT_DATA))
        self.stdout.write(
            f"text moderation model: loading, or training on {len(rows)} labelled prompts (the first time on a host: "
            "minutes)"
        )
        self.stdout.flush()
        model = textmodel.ensure()
        languages = sorted({row.language for row in rows})
        self.stdout.write(
            f"text moderation model ready in {time.perf_counter() - started:.0f} s: {len(rows)} labelled prompts in "
            f"{len(languages)} languages ({', '.join(languages)}), {len(model.categories)} categories, kept in "
            f"{settings.MODERATION_CACHE_DIR}"
        )

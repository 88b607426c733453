"""Decision records: every moderation stage leaves one, whatever its verdict."""

from __future__ import annotations

from django.db import models


class Stage(models.TextChoices):
    INPUT = "input"
    OUTPUT = "output"


class Verdict(models.TextChoices):
    ALLOW = "allow"
    BLOCK = "block"


class ModerationDecision(models.Model):
    job = models.ForeignKey("jobs.Job", on_delete=models.CASCADE, related_name="moderation_decisions")
    stage = models.CharField(max_length=8, choices=Stage.choices)
    verdict = models.CharField(max_length=8, choices=Verdict.choices)
    policy = models.CharField(max_length=64)
    reasons = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.stage}: {self.verdict} ({self.policy})"

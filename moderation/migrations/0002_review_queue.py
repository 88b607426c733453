# The written policy's decisions (stage per input, action incl. hold, category, scores, moderator) and the
# moderators' review queue.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

STAGES = {"input": "input_text", "output": "output_frames"}


def rename_stages(apps, schema_editor):
    Decision = apps.get_model("moderation", "ModerationDecision")
    for old, new in STAGES.items():
        Decision.objects.filter(stage=old).update(stage=new)


def restore_stages(apps, schema_editor):
    Decision = apps.get_model("moderation", "ModerationDecision")
    for old, new in STAGES.items():
        Decision.objects.filter(stage=new).update(stage=old)


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0005_retention"),
        ("moderation", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RenameField("moderationdecision", "verdict", "action"),
        migrations.AlterField(
            model_name="moderationdecision",
            name="action",
            field=models.CharField(
                choices=[("allow", "Allow"), ("hold", "Hold"), ("block", "Block")], max_length=8
            ),
        ),
        migrations.AlterField(
            model_name="moderationdecision",
            name="stage",
            field=models.CharField(
                choices=[
                    ("input_text", "Input Text"),
                    ("input_image", "Input Image"),
                    ("output_frames", "Output Frames"),
                    ("moderator", "Moderator"),
                ],
                max_length=16,
            ),
        ),
        migrations.RunPython(rename_stages, restore_stages),
        migrations.AddField(
            model_name="moderationdecision",
            name="category",
            field=models.CharField(blank=True, max_length=64),
        ),
        migrations.AddField(
            model_name="moderationdecision",
            name="scores",
            field=models.JSONField(default=dict),
        ),
        migrations.AddField(
            model_name="moderationdecision",
            name="moderator",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.CreateModel(
            name="Review",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("kind", models.CharField(choices=[("hold", "Hold"), ("appeal", "Appeal")], max_length=8)),
                (
                    "stage",
                    models.CharField(
                        choices=[
                            ("input_text", "Input Text"),
                            ("input_image", "Input Image"),
                            ("output_frames", "Output Frames"),
                            ("moderator", "Moderator"),
                        ],
                        max_length=16,
                    ),
                ),
                ("message", models.CharField(blank=True, max_length=1000)),
                (
                    "status",
                    models.CharField(
                        choices=[("open", "Open"), ("approved", "Approved"), ("rejected", "Rejected")],
                        default="open",
                        max_length=8,
                    ),
                ),
                ("note", models.CharField(blank=True, max_length=1000)),
                (
                    "rerun",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="jobs.job",
                    ),
                ),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("decided_at", models.DateTimeField(blank=True, null=True)),
                (
                    "decision",
                    models.ForeignKey(
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="moderation.moderationdecision",
                    ),
                ),
                (
                    "job",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="reviews", to="jobs.job"
                    ),
                ),
                (
                    "moderator",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "ordering": ["created_at", "id"],
                "indexes": [models.Index(fields=["status", "created_at"], name="review_queue_idx")],
                "constraints": [
                    models.UniqueConstraint(
                        condition=models.Q(("kind", "appeal")), fields=("job",), name="review_one_appeal_per_job"
                    ),
                    models.UniqueConstraint(
                        condition=models.Q(("status", "open")), fields=("job",), name="review_one_open_per_job"
                    ),
                ],
            },
        ),
    ]

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0010_job_video_signed"),
    ]

    operations = [
        migrations.AddField(
            model_name="account",
            name="moderation_cooldown_until",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]

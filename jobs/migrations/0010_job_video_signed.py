from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0009_prompt_retention"),
    ]

    operations = [
        migrations.AddField(
            model_name="job",
            name="video_signed",
            field=models.BooleanField(default=False, db_default=False),
        ),
    ]

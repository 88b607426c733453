"""Create the reference table (no migrations folder: syncdb-style). Fails harmlessly when it exists."""

import refdrf  # noqa: F401  (configures Django)
from django.db import connection
from refjobs.models import Job

with connection.schema_editor() as editor:
    editor.create_model(Job)

"""Create the floor's tables (syncdb-style, like the reference) and one account per user."""

import floor
from django.db import connection
from floorjobs.models import Account, Event, Job, Task

with connection.schema_editor() as editor:
    for model in (Account, Job, Event, Task):
        editor.create_model(model)
Account.objects.bulk_create([Account(user_id=n) for n in range(floor.USERS)])

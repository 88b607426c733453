"""django-q2's ORM broker on the database's clock (Q_CLUSTER["broker_class"]).

The stock ORM broker stamps a message's `lock` (when it becomes visible, and how long a taken message stays
hidden) with the clock of whichever host runs the code: the enqueuing host writes it, the consuming host
compares it. With a minute of skew between them, every message a fast-clocked dispatcher sends stays hidden
from the runners for that minute, and dispatches expire into `no_runner`. Here both sides use the
database's clock, so hosts may disagree about the time and the queue does not. Messages are also taken in
the order they became visible (ormq_key_lock_idx serves it).
"""

from __future__ import annotations

from time import sleep

from django.db.models.functions import Now
from django_q.brokers.orm import ORM
from django_q.conf import Conf

from jobs.services.transitions import db_now_plus


class DatabaseClockBroker(ORM):
    def enqueue(self, task):
        return self.get_connection().create(key=self.list_key or Conf.CLUSTER_NAME, payload=task, lock=Now()).pk

    def dequeue(self):
        tasks = self.get_connection().filter(key=self.list_key, lock__lt=Now()).order_by("lock", "id")[: Conf.BULK]
        if tasks:
            taken = []
            for task in tasks:
                # Compare-and-set, as django-q2's: only a message still visible is taken, so of two clusters
                # racing for it one wins. (On "still visible", not on the lock's exact value: SQLite's clock has
                # milliseconds and Django writes microseconds, so the value read back would never match.)
                if self.get_connection().filter(id=task.id, lock__lt=Now()).update(lock=db_now_plus(Conf.RETRY)):
                    taken.append((task.pk, task.payload))
            return taken
        sleep(Conf.POLL)  # an empty queue: spare the database, as django-q2's own does
        return None

    def queue_size(self) -> int:
        return self.get_connection().filter(key=self.list_key, lock__lte=Now()).count()

    def lock_size(self) -> int:
        return self.get_connection().filter(key=self.list_key, lock__gt=Now()).count()

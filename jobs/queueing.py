"""Enqueueing on django-q2's ORM broker, always naming the cluster.

The cluster must be explicit: inside a gpu worker (Q_CLUSTER_NAME=gpu) a bare async_task would land on the
gpu queue. On the ORM broker the enqueue is a row in the caller's transaction: it commits or rolls back with it.
"""

from __future__ import annotations

import datetime as dt

from django.db.models.functions import Now
from django_q.brokers.orm import ORM
from django_q.models import OrmQ
from django_q.tasks import async_task

CPU = "cpu"


def enqueue_cpu(func: str, *args: object) -> None:
    async_task(func, *args, cluster=CPU)


class _Held(ORM):
    """An ORM broker that keeps the signed message instead of inserting it."""

    def __init__(self, list_key: str) -> None:  # no connection: it never talks to the database
        self.list_key = list_key
        self.pack: str | None = None

    def enqueue(self, task: str) -> int:
        self.pack = task
        return 0


def cpu_message(func: str, *args: object) -> OrmQ:
    """The broker row enqueue_cpu would insert, unsaved, for the caller to write with its other rows."""
    held = _Held(CPU)
    async_task(func, *args, cluster=CPU, broker=held)
    return OrmQ(key=CPU, payload=held.pack, lock=Now())  # visible from now, on the database's clock (jobs.broker)


def oldest_waiting_cpu_message() -> dt.datetime | None:
    """When the oldest cpu message still waiting for a worker was enqueued (None: the queue is empty).

    The broker (jobs.broker) stamps `lock` with the enqueue time, and moves it RETRY seconds ahead when a
    worker takes the message: a message whose lock is in the past is waiting. Served by ormq_key_lock_idx."""
    return OrmQ.objects.filter(key=CPU, lock__lte=Now()).order_by("lock").values_list("lock", flat=True).first()


def enqueue_runner(func: str, *args: object, queue: str) -> None:
    """Work addressed to one runner: each gpu cluster consumes its own queue (videogen.settings)."""
    async_task(func, *args, cluster=queue)

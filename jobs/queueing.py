"""Enqueueing on django-q2's ORM broker, always naming the cluster.

The cluster must be explicit: inside a gpu worker (Q_CLUSTER_NAME=gpu) a bare async_task would land on the
gpu queue. On the ORM broker the enqueue is a row in the caller's transaction: it commits or rolls back with it.
"""

from __future__ import annotations

from django_q.tasks import async_task

CPU = "cpu"


def enqueue_cpu(func: str, *args: object) -> None:
    async_task(func, *args, cluster=CPU)


def enqueue_runner(func: str, *args: object, queue: str) -> None:
    """Work addressed to one runner: each gpu cluster consumes its own queue (videogen.settings)."""
    async_task(func, *args, cluster=queue)

"""Faults the platform must ride out, and the defects an outside review found (issue 13), one test each."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from django.db import connection

from gpu_runner.tasks import LeaseKeeper

pytestmark = pytest.mark.django_db


def _terminate(pid: int) -> None:
    """pg_terminate_backend from a connection of its own, then wait until the server has closed it."""
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        deadline = time.monotonic() + 5
        while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone():
            assert time.monotonic() < deadline, "the backend outlived its termination"
            time.sleep(0.05)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="terminates a Postgres backend")
@pytest.mark.django_db(transaction=True)
def test_the_lease_heartbeat_recovers_from_a_dropped_connection(make_job):
    """Defect 1: after one dropped connection (a restart, a failover) every later heartbeat failed, so every
    running job was reaped and run again elsewhere while its runner kept going."""
    job = make_job("running", attempt=1, runner_id="r1")
    keeper = LeaseKeeper(job.pk, attempt=1)
    beats: list[bool] = []

    def heartbeat_thread() -> None:  # as LeaseKeeper._run: the thread's own connection
        try:
            keeper.progress = 10
            beats.append(keeper.beat())
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                pid = cursor.fetchone()[0]
            _terminate(pid)
            keeper.progress = 20
            beats.append(keeper.beat())  # fails (logged), the lease is not given up for it
            keeper.progress = 30
            beats.append(keeper.beat())
        finally:
            connection.close()

    thread = threading.Thread(target=heartbeat_thread)
    thread.start()
    thread.join()
    assert beats == [True, True, True]
    job.refresh_from_db()
    assert job.progress == 30  # the beat after the failure renewed the lease again

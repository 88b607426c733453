"""videogen.aiodb: the event loop's Postgres access. Statements run as prepared statements of their
connection's session (prepared once, then EXECUTEd with client-side literals), several in one message, inside
transactions that commit or roll back whole. Real Postgres (transactional: the pool has its own connections)."""

from __future__ import annotations

import asyncio
import datetime as dt

import psycopg
import pytest
from django.utils import timezone

from jobs import batch
from jobs.models import Job, JobEvent
from videogen import aiodb

pytestmark = pytest.mark.django_db(transaction=True)


def run_loop(coro_fn):
    async def go():
        try:
            return await coro_fn()
        finally:
            await aiodb.close_all()

    return asyncio.run(go())


PREPARED = "SELECT name, statement FROM pg_prepared_statements WHERE name LIKE 'vg_%%' ORDER BY name"


def test_a_statement_is_prepared_once_per_connection_and_answers_as_the_orm_would(make_job):
    job = make_job("queued")
    read = ('SELECT "jobs_job"."state", "jobs_job"."created_at" FROM "jobs_job" WHERE "jobs_job"."id" = %s', [job.pk])

    async def go():
        pool = await aiodb.pool()
        async with pool.connection() as conn:
            first = await aiodb.run([read], conn)
            second = await aiodb.run([read, read], conn)
            prepared = await aiodb.run([(PREPARED, [])], conn)
        return first, second, prepared[0]

    first, second, prepared = run_loop(go)
    assert first == [[("queued", job.created_at)]] and second == [first[0], first[0]]
    mine = [statement for _, statement in prepared if "jobs_job" in statement]
    assert len(mine) == 1 and "$1" in mine[0]  # one PREPARE, whatever the number of runs


def test_preparing_can_be_turned_off(make_job, settings):
    settings.WEB_ASYNC_DB_PREPARE = False  # behind a PgBouncer in transaction mode
    job = make_job("queued")

    async def go():
        pool = await aiodb.pool()
        async with pool.connection() as conn:
            rows = await aiodb.run([('SELECT "state" FROM "jobs_job" WHERE "id" = %s', [job.pk])], conn)
            return rows, await aiodb.run([(PREPARED, [])], conn)

    rows, (prepared,) = run_loop(go)
    assert rows == [[("queued",)]] and prepared == []


def test_values_the_server_cannot_type_by_context_and_a_literal_percent(make_job):
    job = make_job("queued")
    since = timezone.now() - dt.timedelta(hours=1)
    statements = [
        # An interval in arithmetic: its type is declared when prepared.
        ('SELECT "id" FROM "jobs_job" WHERE "id" = %s AND "created_at" >= (%s - %s)', [job.pk, since, dt.timedelta(0)]),
        # Django escapes a literal % as %% in SQL that has parameters.
        ("SELECT 'a%%b', %s", ["x"]),
        ('SELECT "id" FROM "jobs_job" WHERE "prompt" LIKE %s', ["%" + job.prompt[1:]]),
    ]
    rows = run_loop(lambda: aiodb.run(statements))
    assert rows == [[(job.pk,)], [("a%b", "x")], [(job.pk,)]]


@pytest.mark.parametrize("in_transaction", [False, True])
def test_a_statement_the_server_will_not_prepare_runs_as_plain_sql(make_job, in_transaction):
    # An int is prepared as a bigint: repeat() takes an int, so PREPARE finds no such function, where the plain
    # statement's literal 3 is an int.
    statement = (f"SELECT repeat('x', %s) AS \"{in_transaction}\"", [3])
    job = make_job("queued")

    def steps():
        yield [("SELECT 1", [])], False
        rows = yield [statement, batch.update_fields(Job(pk=job.pk, progress=7), ["progress"])], True
        return rows

    async def go():
        if in_transaction:  # the refusal must not end the transaction: the update still commits
            return await aiodb.transact(steps()), await aiodb.run([statement])
        return await aiodb.run([statement]), await aiodb.run([statement])

    first, again = run_loop(go)
    assert first[0] == [("xxx",)] and again == [[("xxx",)]]
    if in_transaction:
        job.refresh_from_db()
        assert job.progress == 7


def test_a_failed_message_rolls_back_the_transaction(make_job):
    job = make_job("queued")

    def steps():
        yield (
            [
                batch.insert(
                    JobEvent(job_id=job.pk, from_state="", to_state="queued", reason="one", actor="t", attempt=0)
                )
            ],
            False,
        )
        yield [("SELECT 1 / (%s - %s)", [1, 1])], True  # division by zero: the whole transaction goes

    async def go():
        with pytest.raises(psycopg.errors.DivisionByZero):
            await aiodb.transact(steps())
        # The next transaction on the pool succeeds (a fresh session prepares again).
        return await aiodb.run([('SELECT count(*) FROM "jobs_jobevent" WHERE "reason" = %s', ["one"])])

    assert run_loop(go) == [[(0,)]]
    assert not JobEvent.objects.filter(reason="one").exists()


def test_a_transaction_commits_its_writes_with_the_last_step(make_job):
    job = make_job("queued")

    def steps():
        rows = yield [('SELECT "state" FROM "jobs_job" WHERE "id" = %s FOR UPDATE', [job.pk])], False
        assert rows == [[("queued",)]]
        yield [batch.update_fields(Job(pk=job.pk, progress=42), ["progress"])], True
        return "done"

    assert run_loop(lambda: aiodb.transact(steps())) == "done"
    job.refresh_from_db()
    assert job.progress == 42

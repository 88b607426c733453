"""jobs.prepared and jobs.batch: compiled reads give what the ORM gives; several statements, one round trip."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from jobs import batch
from jobs.models import Account, Job, JobEvent
from jobs.prepared import Prepared

pytestmark = pytest.mark.django_db


def test_compiled_reads_return_what_the_orm_returns(make_job, make_user):
    mine = [make_job("queued"), make_job("succeeded", error_message="x")]
    theirs = make_job(owner=make_user())
    by_user = Prepared(Job, lambda limit, user_id: Job.objects.filter(user_id=user_id).order_by("-pk")[:limit])
    for _ in range(2):  # compiled on the first call, reused on the second
        rows = by_user.fetch(10, user_id=mine[0].user_id)
        assert [j.pk for j in rows] == [j.pk for j in reversed(mine)]
        orm = list(Job.objects.filter(user_id=mine[0].user_id).order_by("-pk"))
        fields = [f.attname for f in Job._meta.concrete_fields]
        assert [[getattr(j, f) for f in fields] for j in rows] == [[getattr(j, f) for f in fields] for j in orm]
        assert not rows[0]._state.adding and rows[0]._state.db == "default"
    assert [j.pk for j in by_user.fetch(10, user_id=theirs.user_id)] == [theirs.pk]
    assert [j.pk for j in by_user.fetch(1, user_id=mine[0].user_id)] == [mine[1].pk]  # another shape


def test_values_list_reads_are_tuples_and_a_value_may_be_bound_twice(make_job):
    job = make_job("queued")
    states = Prepared(
        Job, lambda user_id: Job.objects.filter(user_id__gte=user_id, user_id__lte=user_id).values_list("pk", "state")
    )
    assert states.fetch(user_id=job.user_id) == [(job.pk, "queued")]
    assert states.fetch(user_id=job.user_id + 1000) == []


@pytest.mark.parametrize("options", [{}, {"nowait": True}, {"skip_locked": True}, {"no_key": True}])
def test_a_locking_read_compiles_to_djangos_sql_without_asking_for_a_transaction(user, options):
    """Django's compiler checks that a transaction is open (opening a connection to ask); a prepared read
    compiles anywhere, an event loop included, and adds the lock clause as Django does."""
    locked = Prepared(Account, lambda user_id: Account.objects.select_for_update(**options).filter(user_id=user_id)[:1])
    (sql, params), _ = locked.statement(user_id=user.pk)  # outside any transaction
    with transaction.atomic():
        django_sql, django_params = (
            Account.objects.select_for_update(**options).filter(user_id=user.pk)[:1].query.sql_with_params()
        )
        assert (sql, list(params)) == (django_sql, list(django_params))
        assert [a.user_id for a in locked.fetch(user_id=user.pk)] == [user.pk]
    with pytest.raises(TypeError, match="of="):
        Prepared(
            Account, lambda user_id: Account.objects.select_for_update(of=("self",)).filter(user_id=user_id)
        ).statement(user_id=1)


def test_values_bound_to_small_positive_columns_compile(make_job):
    """A sample outside a column's range (a negative for a positive smallint) made the ORM answer EmptyResultSet
    instead of compiling."""
    job = make_job("queued")
    by_shape = Prepared(
        Job, lambda limit, seconds, width: Job.objects.filter(seconds=seconds, width=width).values_list("pk")[:limit]
    )
    assert by_shape.fetch(10, seconds=job.seconds, width=job.width) == [(job.pk,)]
    assert by_shape.fetch(10, seconds=job.seconds + 1, width=job.width) == []


def test_unsupported_reads_are_refused_when_compiled(make_job):
    with pytest.raises(TypeError, match="plain model rows"):
        Prepared(Job, lambda user_id: Job.objects.filter(user_id=user_id).select_related("user")).fetch(user_id=1)
    with pytest.raises(TypeError, match="ints and strs"):
        Prepared(Job, lambda when: Job.objects.filter(created_at__lt=when)).fetch(when=1.5)
    with pytest.raises(TypeError, match="not Account"):
        Prepared(Account, lambda user_id: Job.objects.filter(user_id=user_id)).fetch(user_id=1)


def test_a_batch_is_one_round_trip_with_each_statements_rows(make_job, user):
    job = make_job("queued")
    prepared = Prepared(Job, lambda pk: Job.objects.filter(pk=pk))
    read, build = prepared.statement(pk=job.pk)
    event = JobEvent(job_id=job.pk, from_state="", to_state="queued", reason="t", actor="test", attempt=0)
    with CaptureQueriesContext(connection) as queries:
        rows = batch.run([read, batch.insert(event), batch.update(Account.objects.filter(user=user), tier="paid")])
    assert len(queries) == 1
    assert [j.pk for j in build(rows[0])] == [job.pk] and rows[1:] == [[], []]
    assert JobEvent.objects.filter(job=job, reason="t").exists() and event.created_at is not None
    assert Account.objects.get(user=user).tier == "paid"


def test_a_failing_statement_fails_the_whole_batch(make_job):
    job = make_job("queued")
    twin = Job(**{f.attname: getattr(job, f.attname) for f in Job._meta.concrete_fields if not f.primary_key})
    event = JobEvent(job_id=job.pk, from_state="", to_state="queued", reason="before", actor="test", attempt=0)
    with pytest.raises(IntegrityError), transaction.atomic():
        batch.run([batch.insert(event), batch.insert(twin)])  # the same public_id: unique violation
    assert not JobEvent.objects.filter(reason="before").exists()


@pytest.mark.django_db(transaction=True)
def test_the_last_batch_carries_the_commit_of_the_outermost_block(make_job):
    job = make_job("queued")
    event = JobEvent(job_id=job.pk, from_state="", to_state="queued", reason="folded", actor="test", attempt=0)
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        assert batch.run([batch.insert(event)], commit=True) == [[]]  # COMMIT's own result is not returned
    (sent,) = [q["sql"] for q in queries if "INSERT" in q["sql"]]
    assert sent.endswith("; COMMIT") == (connection.vendor == "postgresql"), sent
    assert JobEvent.objects.filter(reason="folded").exists()


@pytest.mark.django_db(transaction=True)
def test_a_failing_last_batch_commits_nothing(make_job):
    job = make_job("queued")
    twin = Job(**{f.attname: getattr(job, f.attname) for f in Job._meta.concrete_fields if not f.primary_key})
    event = JobEvent(job_id=job.pk, from_state="", to_state="queued", reason="lost", actor="test", attempt=0)
    with pytest.raises(IntegrityError), transaction.atomic():
        batch.run([batch.insert(event), batch.insert(twin)], commit=True)  # the twin fails: COMMIT never runs
    assert not JobEvent.objects.filter(reason="lost").exists()
    assert Job.objects.count() == 1  # and the connection is usable again


def test_a_nested_block_keeps_its_commit_to_the_outer_one(make_job):
    """The test itself runs in a transaction: COMMIT would end it, so it is not folded in."""
    job = make_job("queued")
    event = JobEvent(job_id=job.pk, from_state="", to_state="queued", reason="nested", actor="test", attempt=0)
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        batch.run([batch.insert(event)], commit=True)
    (sent,) = [q["sql"] for q in queries if "INSERT" in q["sql"]]
    assert "COMMIT" not in sent


def test_next_id_allocates_from_the_tables_sequence(make_job):
    first = make_job()
    sql = batch.next_id(Job)
    assert sql is not None
    (row,), *_ = batch.run([sql])
    assert row[0] > first.pk


def _fresh(sql_params):
    sql, params = sql_params
    return sql, list(params)


def test_a_kept_insert_shape_binds_what_the_orm_would(user):
    """jobs.batch keeps compiled INSERT shapes: the kept shape gives the ORM's own SQL and values."""
    import datetime as dt

    from django.db.models.functions import Now

    from jobs.services.transitions import db_now_plus

    def job(seed: int, enqueued=None) -> Job:
        return Job(
            user_id=user.pk,
            prompt="p",
            model="wan-tiny",
            seconds=4,
            width=128,
            height=128,
            seed=seed,
            stage_enqueued_at=enqueued if enqueued is not None else Now(),
        )

    def masked(params: list) -> list:  # created_at is stamped anew by each insert
        return ["<time>" if isinstance(p, dt.datetime) else p for p in params]

    batch._compiled.clear()
    first = _fresh(batch.insert(job(1)))  # compiled, then kept
    second = job(2)
    kept = _fresh(batch.insert(second))
    batch._compiled.clear()
    compiled = _fresh(batch.insert(second))
    assert kept[0] == compiled[0] == first[0] and "STATEMENT_TIMESTAMP()" in kept[0]
    assert masked(kept[1]) == masked(compiled[1]) and 2 in kept[1]
    # Another expression where Now() was: compiled for itself, never served from the kept shape.
    later = _fresh(batch.insert(job(3, enqueued=db_now_plus(60))))
    assert later[0] != first[0]
    with transaction.atomic():
        batch.run([kept, later])
    rows = Job.objects.filter(user_id=user.pk).order_by("seed")
    assert [j.seed for j in rows] == [2, 3] and rows[1].stage_enqueued_at > rows[0].stage_enqueued_at


def test_a_kept_update_shape_binds_what_the_orm_would(user):
    account = Account.objects.get(user=user)
    batch._compiled.clear()
    account.day_jobs = 3
    first = _fresh(batch.update_fields(account, ["day_jobs", "credit_balance"]))
    account.day_jobs, account.credit_balance = 4, 9
    kept = _fresh(batch.update_fields(account, ["day_jobs", "credit_balance"]))
    expected = _fresh(batch.update(Account.objects.filter(pk=account.pk), day_jobs=4, credit_balance=9))
    assert kept == expected and kept[0] == first[0]
    with transaction.atomic():
        batch.run([kept])
    account.refresh_from_db()
    assert (account.day_jobs, account.credit_balance) == (4, 9)

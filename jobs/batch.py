"""Several statements of one transaction in one round trip to the database.

Every statement is the ORM's own SQL: inserts of unsaved model instances, updates of a queryset, and compiled
reads (jobs.prepared). On Postgres they travel as one message (psycopg's client-side binding sends a
multi-statement query; each statement still runs in order, with its own snapshot, inside the caller's
transaction); on other databases (SQLite) one by one. Used where a hot path writes several rows at once.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any, TypeVar

from django.db import connections
from django.db.models import Model, QuerySet
from django.db.models.functions import Now
from django.db.models.sql import InsertQuery, UpdateQuery
from psycopg.pq import ExecStatus

Statement = tuple[str, Sequence[Any]]
T = TypeVar("T")


# Compiled INSERT and UPDATE statements by shape: building them through the ORM's compiler costs several times
# what binding new values does. Only shapes whose SQL cannot depend on the values are kept (plain values, and
# no expression but Now()).
_compiled: dict[tuple, str] = {}


def _is_expression(value: Any) -> bool:
    return hasattr(value, "resolve_expression")


def insert(obj: Model, using: str = "default", *, returning: bool = False) -> Statement:
    """INSERT one unsaved instance (its auto_now fields set as save() would); its pk is used when set.
    `returning`: the statement's row is the new pk (where the database can return it: Postgres, SQLite)."""
    meta = obj._meta
    fields = [f for f in meta.local_concrete_fields if not f.generated and (f is not meta.pk or obj.pk is not None)]
    values = [f.pre_save(obj, True) for f in fields]
    shape = tuple((i, type(value)) for i, value in enumerate(values) if _is_expression(value))
    key = ("insert", type(obj), using, tuple(f.attname for f in fields), shape, returning)
    sql = _compiled.get(key)
    if sql is not None:
        connection = connections[using]
        return sql, [
            f.get_db_prep_save(v, connection) for f, v in zip(fields, values, strict=True) if not _is_expression(v)
        ]
    query = InsertQuery(type(obj))
    query.insert_values(fields, [obj])
    compiler = query.get_compiler(using=using)
    if returning:
        compiler.returning_fields = [meta.pk]
    ((sql, params),) = compiler.as_sql()
    if all(kind is Now for _, kind in shape) and not any(hasattr(f, "get_placeholder") for f in fields):
        _compiled[key] = sql
    return sql, params


def update(queryset: QuerySet, using: str = "default", **values: Any) -> Statement:
    query = queryset.query.chain(UpdateQuery)
    query.add_update_values(values)
    return query.get_compiler(using=using).as_sql()


def update_fields(obj: Model, fields: Sequence[str], using: str = "default") -> Statement:
    """UPDATE one saved instance's `fields` (by attname) with its current values, by its pk."""
    model, meta = type(obj), obj._meta
    key = ("update", model, using, tuple(fields))
    sql = _compiled.get(key)
    targets = [meta.get_field(name) for name in fields]
    values = [getattr(obj, f.attname) for f in targets]
    if sql is None or any(_is_expression(v) for v in values):
        sql, params = update(model._base_manager.filter(pk=obj.pk), using, **dict(zip(fields, values, strict=True)))
        if not any(_is_expression(v) or hasattr(f, "get_placeholder") for f, v in zip(targets, values, strict=True)):
            _compiled[key] = sql
        return sql, params
    connection = connections[using]
    params = [f.get_db_prep_save(v, connection) for f, v in zip(targets, values, strict=True)]
    return sql, [*params, meta.pk.get_db_prep_value(obj.pk, connection)]


def run(statements: Sequence[Statement], using: str = "default", *, commit: bool = False) -> list[list[tuple]]:
    """Execute in order; each statement's rows ([] for writes).

    commit=True says these are the last statements of the caller's transaction.atomic() block. On Postgres,
    when that block is the outermost one, its COMMIT travels in the same message: the block's own commit then
    finds the transaction ended and sends nothing (psycopg commits only a transaction in progress), a round
    trip saved. If any statement fails, the rest (COMMIT included) never runs and the block rolls back.
    """
    connection = connections[using]
    fold = commit and connection.vendor == "postgresql" and _outermost_atomic(connection)
    if fold:
        statements = [*statements, ("COMMIT", [])]
    results: list[list[tuple]] = []
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql" and len(statements) > 1:
            # Each statement bound on its own: psycopg keeps the parsed form of a statement with few parameters,
            # not of the whole message.
            cursor.execute("; ".join(cursor.cursor.mogrify(sql, params) for sql, params in statements))
            while True:
                results.append(_rows(cursor, connection.vendor))
                if not cursor.nextset():
                    break
        else:
            for sql, params in statements:
                cursor.execute(sql, params)
                results.append(_rows(cursor, connection.vendor))
    return results[:-1] if fold else results


def drive(steps: Generator[tuple[Sequence[Statement], bool], list[list[tuple]], T], using: str = "default") -> T:
    """Run a transaction written as steps (a generator that yields (statements, last) and is sent each step's
    rows; see jobs.services.submission) on Django's connection, inside the caller's transaction.atomic()."""
    statements, last = next(steps)
    while True:
        rows = run(statements, using, commit=last)
        try:
            statements, last = steps.send(rows)
        except StopIteration as done:
            return done.value


def _outermost_atomic(connection: Any) -> bool:
    # One atomic block, not nested in another (a test's, or a caller's: COMMIT would end theirs too), and not
    # already doomed to roll back.
    return (
        connection.in_atomic_block
        and len(connection.atomic_blocks) == 1
        and connection.commit_on_exit
        and not connection.needs_rollback
    )


def _rows(cursor: Any, vendor: str) -> list[tuple]:
    # On Postgres the result's status, not cursor.description: that builds a Column object for every column
    # (a job has 36) only to be tested for truth.
    if vendor == "postgresql":
        result = cursor.cursor.pgresult
        return cursor.fetchall() if result is not None and result.status == ExecStatus.TUPLES_OK else []
    return cursor.fetchall() if cursor.description else []


def next_id(model: type[Model], using: str = "default") -> Statement | None:
    """On Postgres, a statement that takes the table's next id (so rows that refer to a new row can be written
    with it in the same round trip); None elsewhere: insert the row first and read its id."""
    if connections[using].vendor != "postgresql":
        return None
    table, column = model._meta.db_table, model._meta.pk.column
    return "SELECT nextval(pg_get_serial_sequence(%s, %s))", [table, column]

"""Several statements of one transaction in one round trip to the database.

Every statement is the ORM's own SQL: inserts of unsaved model instances, updates of a queryset, and compiled
reads (jobs.prepared). On Postgres they travel as one message (psycopg's client-side binding sends a
multi-statement query; each statement still runs in order, with its own snapshot, inside the caller's
transaction); on other databases (SQLite) one by one. Used where a hot path writes several rows at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import connections
from django.db.models import Model, QuerySet
from django.db.models.sql import InsertQuery, UpdateQuery
from psycopg.pq import ExecStatus

Statement = tuple[str, Sequence[Any]]


def insert(obj: Model, using: str = "default") -> Statement:
    """INSERT one unsaved instance (its auto_now fields set as save() would); its pk is used when set."""
    meta = obj._meta
    fields = [f for f in meta.local_concrete_fields if not f.generated and (f is not meta.pk or obj.pk is not None)]
    query = InsertQuery(type(obj))
    query.insert_values(fields, [obj])
    ((sql, params),) = query.get_compiler(using=using).as_sql()
    return sql, params


def update(queryset: QuerySet, using: str = "default", **values: Any) -> Statement:
    query = queryset.query.chain(UpdateQuery)
    query.add_update_values(values)
    return query.get_compiler(using=using).as_sql()


def run(statements: Sequence[Statement], using: str = "default") -> list[list[tuple]]:
    """Execute in order; each statement's rows ([] for writes)."""
    connection = connections[using]
    results: list[list[tuple]] = []
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql" and len(statements) > 1:
            cursor.execute("; ".join(sql for sql, _ in statements), [p for _, params in statements for p in params])
            while True:
                results.append(_rows(cursor, connection.vendor))
                if not cursor.nextset():
                    break
        else:
            for sql, params in statements:
                cursor.execute(sql, params)
                results.append(_rows(cursor, connection.vendor))
    return results


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

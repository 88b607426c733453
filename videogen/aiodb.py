"""The web role's async Postgres access, for the routes served on the event loop (jobs.api.hot).

One psycopg `AsyncConnectionPool` per process and event loop, built from the same settings as Django's
connection (database, user, role name in `pg_stat_activity`, Django's adapters), so rows come back exactly as
the ORM would read them. Statements are the ORM's own SQL (jobs.prepared, jobs.batch): several travel in one
message, as jobs.batch sends them on the sync side (client-side binding), each as a prepared statement of the
connection's session (run()).

A connection the server closed (a restart, a failover, pg_terminate_backend) is found before use without a
round trip, as videogen.pgpool finds it for the sync pool: its FATAL message or EOF waits on the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import decimal
import hashlib
import logging
import re
import select
import weakref
from collections.abc import Callable, Generator, Sequence
from typing import Any, TypeVar

import psycopg
from django.conf import settings
from django.db import connections
from psycopg import AsyncClientCursor, AsyncConnection, AsyncCursor
from psycopg.pq import ExecStatus, TransactionStatus
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from jobs.batch import Statement

T = TypeVar("T")
log = logging.getLogger(__name__)

# A pool belongs to the loop it was opened on (a loop's id may be reused once it is gone; the loop itself not).
_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncConnectionPool] = weakref.WeakKeyDictionary()
# What this process sent: messages (round trips) and the statements in them.
sent = {"messages": 0, "statements": 0}


async def _check(conn: AsyncConnection) -> None:
    if conn.closed or conn.broken:
        raise psycopg.OperationalError("the pooled connection is closed")
    readable, _, _ = select.select([conn.fileno()], [], [], 0)
    if readable:
        await AsyncConnectionPool.check_connection(conn)


async def _configure(conn: AsyncConnection) -> None:
    # What Django's backend sets on a new connection: the time zone its datetimes are read in.
    if conn.info.parameter_status("TimeZone") != "UTC":
        await conn.execute("SET TIME ZONE 'UTC'")


def _connection_kwargs() -> dict:
    params = dict(connections["default"].get_connection_params())
    params.pop("cursor_factory", None)  # Django's sync cursor class; ours is async
    params.pop("server_side_binding", None)
    # Told apart from the sync pool's connections in pg_stat_activity.
    params["application_name"] = params.get("application_name", "videogen") + "-async"
    params["autocommit"] = True  # transactions are spelled out: BEGIN travels with the first statements
    params["cursor_factory"] = AsyncClientCursor
    return params


async def pool() -> AsyncConnectionPool:
    """This event loop's pool, opened on first use."""
    key = asyncio.get_running_loop()
    found = _pools.get(key)
    if found is None:
        size = settings.WEB_ASYNC_DB_POOL
        found = AsyncConnectionPool(
            kwargs=_connection_kwargs(),
            min_size=min(2, size),
            max_size=size,
            open=False,
            configure=_configure,
            check=_check,
            timeout=settings.WEB_ASYNC_DB_TIMEOUT,
        )
        _pools[key] = found
        await found.open()
    return found


class _Form:
    """A statement as a named prepared statement: its PREPARE, and the EXECUTE that runs it with new values."""

    def __init__(self, sql: str, params: Sequence[Any]) -> None:
        self.name = "vg_" + hashlib.blake2b(sql.encode(), digest_size=10).hexdigest()
        numbers = iter(range(1, len(params) + 1))
        # Django's placeholders are %s and a literal % is %%; PREPARE numbers its parameters and takes % as is.
        body = _PLACEHOLDER.sub(lambda m: "%" if m.group() == "%%" else f"${next(numbers)}", sql)
        # strs and NULLs are `unknown`, to take the type of their column or comparison (as psycopg sends them when
        # it binds server-side); ints bigint, the rest by their Python type (an interval in arithmetic, say).
        types = [_TYPES.get(type(p), "unknown") for p in params]
        self.prepare = (
            f"PREPARE {self.name} ({', '.join(types)}) AS {body}" if params else f"PREPARE {self.name} AS {body}"
        )
        self.execute = f"EXECUTE {self.name}({', '.join(['%s'] * len(params))})" if params else f"EXECUTE {self.name}"


_PLACEHOLDER = re.compile(r"%%|%s")
_TYPES = {
    bool: "bool",
    int: "int8",
    dt.datetime: "timestamptz",
    dt.date: "date",
    dt.time: "time",
    dt.timedelta: "interval",
    float: "float8",
    decimal.Decimal: "numeric",
    Jsonb: "jsonb",
}
# Statements that are not prepared: transaction control, and what is not a query (PREPARE takes SELECT, INSERT,
# UPDATE, DELETE, MERGE and VALUES).
_UNPREPARED = ("BEGIN", "COMMIT", "ROLLBACK", "SET ")
_forms: dict[str, _Form | None] = {}
# The statements each connection has prepared (prepared statements live as long as their session).
_prepared: weakref.WeakKeyDictionary[AsyncConnection, set[str]] = weakref.WeakKeyDictionary()


async def run(statements: Sequence[Statement], conn: AsyncConnection | None = None) -> list[list[tuple]]:
    """Run the statements in order, in one message (one round trip); each statement's rows ([] for the others).

    Each statement runs as a prepared statement of its connection's session (`EXECUTE name(values)`; the first
    time a connection meets it, a round trip of its own prepares it): Postgres parses and plans it once per
    connection, where parsing and planning a submission's statements every time cost more than running them.
    The values are bound client-side (psycopg's literals, from Django's adapters), so several statements still
    travel as one simple query, and an error stops the rest."""
    if conn is None:
        async with (await pool()).connection() as conn:
            return await run(statements, conn)
    sent["messages"] += 1
    sent["statements"] += len(statements)
    known = _prepared.setdefault(conn, set())
    parts = []
    async with conn.cursor() as cursor:
        for sql, params in statements:
            form = _form(sql, params)
            if form is not None and form.name not in known and not await _prepare(conn, sql, form):
                form = None
            # mogrify even without values: a statement's SQL writes a literal % as %% (as jobs.batch binds it).
            parts.append(cursor.mogrify(sql, params) if form is None else cursor.mogrify(form.execute, params))
        await cursor.execute("; ".join(parts))
        results: list[list[tuple]] = []
        while True:
            results.append(await _rows(cursor))
            if not cursor.nextset():
                return results


async def _prepare(conn: AsyncConnection, sql: str, form: _Form) -> bool:
    """Prepare `form` in this connection's session; False if the server will not (it cannot type a parameter,
    say): the statement then runs as plain SQL from now on. Inside a transaction, a savepoint keeps a refusal
    from ending it."""
    inside = conn.info.transaction_status != TransactionStatus.IDLE
    try:
        await conn.execute(f"SAVEPOINT vg_prepare; {form.prepare}; RELEASE vg_prepare" if inside else form.prepare)
    except psycopg.Error as exc:
        if not (exc.sqlstate or "").startswith("42"):  # not the statement's fault: as any statement would fail
            raise
        if inside:
            await conn.execute("ROLLBACK TO vg_prepare; RELEASE vg_prepare")
        _forms[sql] = None
        log.warning("not prepared (%s: %s): %s", exc.sqlstate, exc, sql[:200])
        return False
    _prepared[conn].add(form.name)
    return True


def _form(sql: str, params: Sequence[Any]) -> _Form | None:
    if not settings.WEB_ASYNC_DB_PREPARE:
        return None
    form = _forms.get(sql, False)
    if form is False:
        form = _forms[sql] = None if sql.lstrip().upper().startswith(_UNPREPARED) else _Form(sql, params)
    return form


async def _rows(cursor: AsyncCursor) -> list[tuple]:
    result = cursor.pgresult
    return await cursor.fetchall() if result is not None and result.status == ExecStatus.TUPLES_OK else []


async def transact(steps: Generator[tuple[Sequence[Statement], bool], list[list[tuple]], T]) -> T:
    """Run a transaction written as steps (see jobs.batch.drive, its driver on Django's connection) on one
    pooled connection: BEGIN travels with the first step's statements and COMMIT with the last's, so a step is
    one round trip. If the steps raise, or a statement fails, the transaction is rolled back."""
    async with (await pool()).connection() as conn:
        try:
            statements, last = next(steps)
            opened = False
            while True:
                message = [*([] if opened else [("BEGIN", [])]), *statements, *([("COMMIT", [])] if last else [])]
                rows = await run(message, conn)
                rows = rows[0 if opened else 1 : len(rows) - 1 if last else len(rows)]
                opened = not last
                try:
                    statements, last = steps.send(rows)
                except StopIteration as done:
                    if opened:  # the steps ended without writing: end the transaction
                        await run([("COMMIT", [])], conn)
                    return done.value
        except BaseException:
            if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
                with contextlib.suppress(psycopg.Error):  # a broken connection: the pool drops it
                    await conn.execute("ROLLBACK")
            raise


async def fetch(prepared: tuple[Statement, Callable[[list[tuple]], Any]]) -> Any:
    """One compiled read (a statement and its builder, as jobs.prepared hands them out) run here."""
    statement, build = prepared
    return build((await run([statement]))[0])


async def close_all() -> None:
    for found in list(_pools.values()):
        await found.close()
    _pools.clear()

"""The web role's async Postgres access, for the routes served on the event loop (jobs.api.hot).

One psycopg `AsyncConnectionPool` per process and event loop, built from the same settings as Django's
connection (database, user, role name in `pg_stat_activity`, Django's adapters), so rows come back exactly as
the ORM would read them. Statements are the ORM's own SQL (jobs.prepared, jobs.batch): several travel in one
message, as jobs.batch sends them on the sync side (client-side binding).

A connection the server closed (a restart, a failover, pg_terminate_backend) is found before use without a
round trip, as videogen.pgpool finds it for the sync pool: its FATAL message or EOF waits on the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import weakref
from collections.abc import Callable, Generator, Sequence
from typing import Any, TypeVar

import psycopg
from django.conf import settings
from django.db import connections
from psycopg import AsyncConnection, AsyncCursor
from psycopg.pq import ExecStatus, TransactionStatus
from psycopg_pool import AsyncConnectionPool

from jobs.batch import Statement

T = TypeVar("T")

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
    params["cursor_factory"] = AsyncCursor
    # Every statement prepared on the server at its first run on a connection (Django turns this off).
    params["prepare_threshold"] = 0
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


async def run(statements: Sequence[Statement], conn: AsyncConnection | None = None) -> list[list[tuple]]:
    """Run the statements in order, in one round trip; each statement's rows ([] for the others).

    Each statement is prepared on the server the first time a connection runs it (its parse and plan are then
    reused), and several travel together in pipeline mode: one Sync, so one round trip, and an error stops the
    rest as a multi-statement query would."""
    if conn is None:
        async with (await pool()).connection() as conn:
            return await run(statements, conn)
    sent["messages"] += 1
    sent["statements"] += len(statements)
    if len(statements) == 1:
        async with conn.cursor() as cursor:
            await cursor.execute(*statements[0])
            return [await _rows(cursor)]
    cursors = []
    async with conn.pipeline():
        for sql, params in statements:
            cursor = conn.cursor()
            await cursor.execute(sql, params)
            cursors.append(cursor)
    return [await _rows(cursor) for cursor in cursors]


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

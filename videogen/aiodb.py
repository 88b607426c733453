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
import select
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from django.conf import settings
from django.db import connections
from psycopg import AsyncClientCursor, AsyncConnection
from psycopg.pq import ExecStatus
from psycopg_pool import AsyncConnectionPool

from jobs.batch import Statement

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


async def run(statements: Sequence[Statement], conn: AsyncConnection | None = None) -> list[list[tuple]]:
    """Run the statements in order, in one message; each statement's rows ([] for the others)."""
    if conn is None:
        async with (await pool()).connection() as conn:
            return await run(statements, conn)
    results: list[list[tuple]] = []
    sent["messages"] += 1
    sent["statements"] += len(statements)
    async with conn.cursor() as cursor:
        if len(statements) == 1:
            await cursor.execute(*statements[0])
        else:
            await cursor.execute("; ".join(sql for sql, _ in statements), [p for _, ps in statements for p in ps])
        while True:
            result = cursor.pgresult
            rows = result is not None and result.status == ExecStatus.TUPLES_OK
            results.append(await cursor.fetchall() if rows else [])
            if not cursor.nextset():
                break
    return results


async def fetch(prepared: tuple[Statement, Callable[[list[tuple]], Any]]) -> Any:
    """One compiled read (a statement and its builder, as jobs.prepared hands them out) run here."""
    statement, build = prepared
    return build((await run([statement]))[0])


async def close_all() -> None:
    for found in list(_pools.values()):
        await found.close()
    _pools.clear()

"""The web role's database backend: Django's Postgres backend, whose pool checks a connection before handing
it out without a round trip.

Django's pool checks with psycopg_pool's `check_connection`, an empty query on every checkout: a round trip
per request. A connection the server has closed (a restart, a failover, pg_terminate_backend) has its FATAL
message or its EOF waiting on the socket, while a healthy idle one has nothing to read. So the socket is
polled, and only a connection with something waiting pays for the empty query: a dead one fails it and the
pool replaces it before any request sees it; one with a stray notice passes.
"""

from __future__ import annotations

import select

from django.db.backends.base.base import NO_DB_ALIAS
from django.db.backends.postgresql import base
from psycopg import Connection
from psycopg_pool import ConnectionPool


def check_pooled(conn: Connection) -> None:
    if conn.closed or conn.broken:
        raise ConnectionError("the pooled connection is closed")
    readable, _, _ = select.select([conn.fileno()], [], [], 0)
    if readable:
        ConnectionPool.check_connection(conn)


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def pool(self) -> ConnectionPool | None:
        # Django's own property, with this check instead of the empty query (Django passes `check` itself, so
        # it cannot come through OPTIONS["pool"]).
        options = self.settings_dict["OPTIONS"].get("pool")
        if self.alias == NO_DB_ALIAS or not options:
            return None
        if self.alias not in self._connection_pools:
            kwargs = self.get_connection_params()
            kwargs["autocommit"] = True  # as Django's: it sets the mode itself later
            pool = ConnectionPool(
                kwargs=kwargs,
                open=False,
                configure=self._configure_connection,
                check=check_pooled,
                **({} if options is True else options),
            )
            self._connection_pools.setdefault(self.alias, pool)  # the first thread to set it wins, as Django's
        return self._connection_pools[self.alias]

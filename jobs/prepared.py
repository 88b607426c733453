"""Hot reads compiled once: a queryset's SQL is built by the ORM the first time, then reused with new values.

On the status-read path, building a queryset and compiling it to SQL costs several times what Postgres takes
to answer it. A `Prepared` read keeps what the ORM produced for each database and shape (the SQL, where each
value goes, the column converters, the fields to build instances from) and from then on only binds values,
runs the SQL and builds model instances the way the ORM would (`Model.from_db`, the backend's converters), so
the same code serves Postgres and SQLite.

Limits, checked when compiling: plain model rows (no select_related, no annotations, no deferred fields) or
values_list() tuples, and values that reach the SQL unchanged (ints and strs, matched by their positions
through unique sample values). `statement()` hands the SQL to jobs.batch, to run with other statements in one round
trip.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from django.db import connections, router
from django.db.models import Model, QuerySet

from jobs import batch

_samples = itertools.count(1)


def _sample(value: Any) -> Any:
    n = next(_samples)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"Prepared reads bind ints and strs, not {type(value).__name__}")
    # Inside every integer column's range, positive ones and smallints included (outside it the ORM answers
    # EmptyResultSet instead of compiling). A query's own value may be equal by chance: compiling twice with
    # other samples tells them apart (_compile).
    return 20_000 + n % 10_000 if isinstance(value, int) else f"\x01prepared-sample-{n}"


@dataclass(frozen=True)
class _Compiled:
    sql: str
    params: tuple[Any, ...]
    slots: tuple[tuple[int, str], ...]  # (position in params, name of the value bound there)
    converters: tuple[tuple[int, tuple[Callable, ...], Any], ...]
    model: type[Model]
    attnames: tuple[str, ...]


class Prepared:
    """`Prepared(Model, build)` where `build(*shape, **values)` returns a queryset of Model;
    `.fetch(*shape, **values)` runs it and returns the instances.

    `shape` (hashable: a limit, an order, whether a cursor is given) selects the compiled variant; `values`
    are bound into it on every call.
    """

    def __init__(self, model: type[Model], build: Callable[..., QuerySet]) -> None:
        self.model, self.build = model, build
        self._compiled: dict[tuple[str, tuple[Hashable, ...], tuple[str, ...]], _Compiled] = {}

    def fetch(self, *shape: Hashable, **values: Any) -> list[Any]:
        statement, build = self.statement(*shape, **values)
        return build(batch.run([statement], using=router.db_for_read(self.model))[0])

    def statement(self, *shape: Hashable, **values: Any) -> tuple[batch.Statement, Callable[[list[tuple]], list]]:
        """The SQL and values of one call, and what turns its rows into results (for jobs.batch.run)."""
        alias = router.db_for_read(self.model)
        compiled = self._compiled.get((alias, shape, tuple(sorted(values))))
        if compiled is None:
            compiled = self._compile(alias, shape, values)
        params = list(compiled.params)
        for position, name in compiled.slots:
            params[position] = values[name]
        return (compiled.sql, params), lambda rows: self._build(compiled, alias, rows)

    @staticmethod
    def _sql(queryset: QuerySet, alias: str) -> tuple[Any, tuple[str, list[Any]]]:
        """The queryset's compiler and SQL. A locking read is compiled without its lock, which is then added as
        Django adds it (last): Django's compiler asks the connection whether a transaction is open, which would
        open a connection on whatever thread compiles (an event loop's included); the drivers run a locking
        read inside their transaction."""
        query = queryset.query
        lock = query.select_for_update and connections[alias].features.has_select_for_update
        if lock:
            if query.select_for_update_of:
                raise TypeError("select_for_update(of=...) is not supported by prepared reads")
            query = query.clone()
            query.select_for_update = False
        compiler = query.get_compiler(using=alias)
        sql, params = compiler.as_sql()
        if lock:
            sql += " " + connections[alias].ops.for_update_sql(
                nowait=queryset.query.select_for_update_nowait,
                skip_locked=queryset.query.select_for_update_skip_locked,
                no_key=queryset.query.select_for_no_key_update,
            )
        return compiler, (sql, list(params))

    @staticmethod
    def _build(compiled: _Compiled, alias: str, rows: list[tuple]) -> list[Any]:
        connection = connections[alias]
        out = []
        for row in rows:
            if compiled.converters:
                row = list(row)
                for position, convs, expression in compiled.converters:
                    value = row[position]
                    for convert in convs:
                        value = convert(value, expression, connection)
                    row[position] = value
            out.append(compiled.model.from_db(alias, compiled.attnames, row) if compiled.attnames else tuple(row))
        return out

    def _compile(self, alias: str, shape: tuple[Hashable, ...], values: dict[str, Any]) -> _Compiled:
        samples = {name: _sample(value) for name, value in values.items()}
        queryset = self.build(*shape, **samples)
        _, (_, others) = self._sql(self.build(*shape, **{name: _sample(v) for name, v in values.items()}), alias)
        if queryset.model is not self.model:
            raise TypeError(f"the queryset is of {queryset.model.__name__}, not {self.model.__name__}")
        compiler, (sql, params) = self._sql(queryset, alias)
        query = compiler.query
        info = compiler.klass_info or {}
        tuples = bool(query.values_select)  # a values_list() query
        plain = not (info.get("related_klass_infos") or compiler.annotation_col_map or query.deferred_loading[0])
        if not (tuples or plain):
            raise TypeError("Prepared reads return plain model rows or values_list() tuples")
        if len(others) != len(params):
            raise TypeError("the query's shape must not depend on its values")
        slots = []
        for name, sample in samples.items():
            positions = [i for i, p in enumerate(params) if p == sample and others[i] != sample]
            if not positions:
                raise TypeError(f"value {name!r} must reach the SQL unchanged")
            slots.extend((position, name) for position in positions)
        columns = [col for col, _, _ in compiler.select]
        converters = compiler.get_converters(columns)
        compiled = _Compiled(
            sql=sql,
            params=tuple(params),
            slots=tuple(slots),
            converters=tuple((pos, tuple(convs), expr) for pos, (convs, expr) in converters.items()),
            model=self.model,
            # Model rows are built into instances; values_list() rows stay tuples.
            attnames=() if tuples else tuple(col.target.attname for col in columns),
        )
        self._compiled[(alias, shape, tuple(sorted(values)))] = compiled  # one dict store: safe across threads
        return compiled

"""The embedded warehouse: a DuckDB file driven through Ibis, hardened for offline use."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import ibis
import pyarrow as pa

from segone.exceptions import StoreError, WarehouseBusyError
from segone.store.base import Warehouse


class DuckDBWarehouse(Warehouse):
    """A DuckDB database file (or ``":memory:"``).

    Extension auto-install and auto-load are off: every extension other than the built-in
    parquet, json and icu would need a download, which must never happen at run time.
    """

    def __init__(
        self,
        path: str | Path = ":memory:",
        *,
        threads: int = 2,
        memory_limit: str = "4GB",
        read_only: bool = False,
    ) -> None:
        self.path = str(path)
        self._memory_limit = memory_limit
        try:
            self._con = ibis.duckdb.connect(
                self.path,
                read_only=read_only,
                threads=threads,
                memory_limit=memory_limit,
                autoinstall_known_extensions=False,
                autoload_known_extensions=False,
            )
        except duckdb.IOException as exc:
            msg = str(exc).splitlines()[0]
            if "lock" in msg.lower():
                raise WarehouseBusyError(
                    f"the warehouse {self.path} is in use by another segone process; "
                    "wait for it to finish"
                ) from None
            raise StoreError(f"cannot open warehouse {self.path}: {msg}") from None
        self._raw("SET TimeZone = 'UTC'")
        # rows carry their own order (line numbers, timestamps); not preserving insertion order
        # lets DuckDB write in parallel
        self._raw("SET preserve_insertion_order = false")
        self._raw("SET enable_progress_bar = false")

    @property
    def backend(self) -> Any:
        return self._con

    def _raw(self, sql: str) -> None:
        try:
            self._con.raw_sql(sql)
        except duckdb.Error as exc:
            raise StoreError(str(exc), sql) from None

    def execute(self, expr: ibis.Expr) -> Any:
        try:
            return self._con.execute(expr)
        except duckdb.Error as exc:
            raise StoreError(str(exc), _sql(expr)) from None

    def to_arrow(self, expr: ibis.Table) -> pa.Table:
        try:
            return self._con.to_pyarrow(expr)
        except duckdb.Error as exc:
            raise StoreError(str(exc), _sql(expr)) from None

    def insert(self, name: str, expr: ibis.Table) -> None:
        target = self._con.table(name).schema()
        expr = expr.select(
            *[
                expr[c].cast(t).name(c) if c in expr.columns else ibis.null(t).name(c)
                for c, t in target.items()
            ]
        )
        try:
            self._con.insert(name, expr)
        except duckdb.Error as exc:
            raise StoreError(str(exc), _sql(expr)) from None

    def stage(self, name: str, data: pa.Table, *, append: bool) -> ibis.Table:
        # through the engine's own connection, and unregistered at once: an Ibis in-memory table
        # keeps its Arrow buffers alive, so staging a file chunk by chunk grew with the file
        con = self._con.con
        view = "_segone_arrow_chunk"
        try:
            con.register(view, data)
            try:
                if append:
                    con.execute(f'INSERT INTO "{name}" BY NAME SELECT * FROM "{view}"')
                else:
                    con.execute(f'CREATE OR REPLACE TEMP TABLE "{name}" AS SELECT * FROM "{view}"')
            finally:
                con.unregister(view)
        except duckdb.Error as exc:
            raise StoreError(f"staging {name}: {exc}") from None
        return self._con.table(name)

    def delete_matching(self, name: str, keys: ibis.Table, on: list[str]) -> int:
        tmp = "_segone_delete_keys"
        self.materialize(tmp, keys.select(*on).distinct())
        cond = " AND ".join(f'"{name}"."{c}" = k."{c}"' for c in on)
        before = self.count(name)
        self._raw(f'DELETE FROM "{name}" USING "{tmp}" AS k WHERE {cond}')
        self.drop_staging(tmp)
        return before - self.count(name)

    def replace(self, name: str, expr: ibis.Table) -> None:
        try:
            self._con.create_table(name, obj=expr, overwrite=True)
        except duckdb.Error as exc:
            raise StoreError(str(exc), _sql(expr)) from None

    def materialize(self, name: str, expr: ibis.Table) -> ibis.Table:
        try:
            self._con.create_table(name, obj=expr, temp=True, overwrite=True)
        except duckdb.Error as exc:
            raise StoreError(str(exc), _sql(expr)) from None
        return self._con.table(name)

    def set_timezone(self, tz: str) -> None:
        self._raw(f"SET TimeZone = '{tz.replace(chr(39), '')}'")

    def limit_memory(self, limit: str | None) -> str | None:
        # the cap as it was given, not as the engine prints it back (rounded: "2.7 GiB")
        before = self._memory_limit
        if limit is not None:
            self._raw(f"SET memory_limit = '{limit.replace(chr(39), '')}'")
            self._memory_limit = limit
        return before

    def stage_expr(self, name: str, expr: ibis.Table, *, append: bool) -> ibis.Table:
        if not append:
            return self.materialize(name, expr)
        try:
            self._con.insert(name, expr)
        except duckdb.Error as exc:
            raise StoreError(str(exc), _sql(expr)) from None
        return self._con.table(name)

    def drop_staging(self, name: str) -> None:
        self._raw(f'DROP TABLE IF EXISTS "{name}"')

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self._raw("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self._raw("ROLLBACK")
            raise
        self._raw("COMMIT")

    def checkpoint(self) -> None:
        self._raw("CHECKPOINT")

    def close(self) -> None:
        self._con.disconnect()


def offline_connection(path: str = ":memory:") -> duckdb.DuckDBPyConnection:
    """A plain DuckDB connection for engine-level work that has no Ibis form (Splink's DuckDB
    API, file compaction), with extension auto-install/auto-load off like the warehouse's."""
    return duckdb.connect(
        path, config={"autoinstall_known_extensions": False, "autoload_known_extensions": False}
    )


def compact_file(path: Path) -> bool:
    """Rewrite a closed DuckDB file into a new one (``COPY FROM DATABASE``) and swap it in, so
    freed blocks (deleted rows) leave the file. False when there is no such file."""
    if not path.is_file():
        return False
    tmp = path.with_name(path.name + ".compact")
    for p in (tmp, Path(str(tmp) + ".wal")):
        p.unlink(missing_ok=True)
    con = offline_connection()
    try:
        con.execute(f"ATTACH '{_q(path)}' AS src")
        con.execute(f"ATTACH '{_q(tmp)}' AS dst")
        con.execute("COPY FROM DATABASE src TO dst")
        con.execute("DETACH dst")
        con.execute("DETACH src")
    finally:
        con.close()
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    Path(str(path) + ".wal").unlink(missing_ok=True)
    return True


def _q(path: Path) -> str:
    return str(path).replace("'", "''")


def _sql(expr: ibis.Expr) -> str | None:
    try:
        return str(ibis.to_sql(expr, dialect="duckdb"))
    except Exception:  # the SQL is only a diagnostic aid
        return None

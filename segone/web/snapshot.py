"""The warehouse as the dashboard reads it: a private copy, refreshed after each build.

DuckDB lets one process write a database file, or many read it, never both. A dashboard holding
the warehouse open would make ``segone build`` fail ("in use by another segone process"), and
opening it per request would make a build that starts mid-request fail just the same. So the
dashboard reads a copy: when the warehouse file changes (a build finished), it opens the file
read-only for as long as a file copy takes, copies it, and from then on reads the copy. While a
build holds the file, the previous copy keeps answering and pages say so.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ibis

from segone.exceptions import StoreError
from segone.store.duckdb import DuckDBWarehouse


class FrozenWarehouse(DuckDBWarehouse):
    """The dashboard's copy: nothing changes it until the next copy replaces it, so table
    expressions (whose schema lookup costs more than most of the dashboard's queries), the
    list of tables and row counts are looked up once. Staging tables (``_``-prefixed) are not
    cached: previews create and drop them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tables: dict[str, ibis.Table] = {}
        self._counts: dict[str, int] = {}
        self._names: list[str] | None = None

    def table(self, name: str) -> ibis.Table:
        if name.startswith("_"):
            return super().table(name)
        if name not in self._tables:
            self._tables[name] = super().table(name)
        return self._tables[name]

    def tables(self) -> list[str]:
        if self._names is None:
            self._names = [n for n in super().tables() if not n.startswith("_")]
        return list(self._names)

    def count(self, name: str) -> int:
        if name.startswith("_"):
            return super().count(name)
        if name not in self._counts:
            self._counts[name] = super().count(name)
        return self._counts[name]


@dataclass(frozen=True)
class SnapshotState:
    """What the pages say about the data they show."""

    exists: bool  # a warehouse file exists at all
    copied_at: datetime | None  # when the copy being read was taken
    stale: bool  # the warehouse changed since, but could not be copied (a build holds it)


class WarehouseSnapshot:
    """A read-only copy of the project's warehouse, shared by every request of the process
    (one DuckDB connection, used one request at a time)."""

    def __init__(self, source: Path, copy_dir: Path, *, threads: int = 2) -> None:
        self.source = Path(source)
        self.copy = Path(copy_dir) / "dashboard.duckdb"
        self.threads = threads
        self._lock = threading.RLock()
        self._wh: FrozenWarehouse | None = None
        self.version = 0  # increases with every new copy (page caches key on it)
        self._seen: tuple[float, int] | None = None
        self._copied_at: datetime | None = None
        self._stale = False

    def _signature(self) -> tuple[float, int] | None:
        try:
            st = self.source.stat()
        except FileNotFoundError:
            return None
        wal = self.source.with_name(self.source.name + ".wal")
        wal_m = wal.stat().st_mtime if wal.exists() else 0.0
        return (max(st.st_mtime, wal_m), st.st_size)

    def _refresh(self) -> None:
        sig = self._signature()
        if sig is None or sig == self._seen:
            return
        try:
            # a read-only open takes DuckDB's shared lock: no build writes while we copy, and
            # opening also replays a left-over WAL into what we read
            src = DuckDBWarehouse(self.source, threads=1, memory_limit="256MB", read_only=True)
        except StoreError:
            self._stale = self._wh is not None
            if self._wh is None:
                raise
            return
        try:
            if self._wh is not None:
                self._wh.close()
                self._wh = None
            self.copy.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.copy.with_suffix(".tmp")
            shutil.copyfile(self.source, tmp)
            wal = self.source.with_name(self.source.name + ".wal")
            tmp_wal = tmp.with_name(tmp.name + ".wal")
            if wal.exists():
                shutil.copyfile(wal, tmp_wal)
            elif tmp_wal.exists():
                tmp_wal.unlink()
        finally:
            src.close()
        copy_wal = self.copy.with_name(self.copy.name + ".wal")
        if copy_wal.exists():
            copy_wal.unlink()
        tmp.replace(self.copy)
        if tmp_wal.exists():
            tmp_wal.replace(copy_wal)
        self._seen = sig
        self.version += 1
        self._copied_at = datetime.now(UTC)
        self._stale = False

    def state(self) -> SnapshotState:
        return SnapshotState(self.source.exists(), self._copied_at, self._stale)

    @contextmanager
    def read(self) -> Iterator[FrozenWarehouse]:
        """The copy, for one request (requests take turns on the one connection)."""
        with self._lock:
            self._refresh()
            if self._seen is None:
                raise StoreError(f"no warehouse at {self.source} yet")
            if self._wh is None:
                # not read-only: the copy is ours, and the rule builder's previews stage temp
                # tables; nothing is ever written to the copy's permanent tables
                self._wh = FrozenWarehouse(
                    self.copy, threads=self.threads, memory_limit="1GB", read_only=False
                )
            yield self._wh

    def close(self) -> None:
        with self._lock:
            if self._wh is not None:
                self._wh.close()
                self._wh = None

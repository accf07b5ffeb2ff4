"""A private copy of a DuckDB warehouse, for readers that live beside builds: the dashboard and
notebooks.

DuckDB lets one process write a database file only when no other process has it open, even
read-only. A reader that kept the warehouse open would make ``segone build`` fail ("in use by
another segone process") for as long as it lives, and one that opened it per request would make
a build that starts mid-request fail just the same. So these readers read a copy: when the
warehouse file (or its write-ahead log) changed, the copy is taken while holding a read-only
connection (a shared lock: no writer is midway through a write) that is released at once. While
a build holds the warehouse, the previous copy keeps answering (``state().stale`` says so). The
copy costs a sequential read of the file, about a second per GB.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ibis

from segone.exceptions import StoreError, WarehouseBusyError
from segone.store.duckdb import DuckDBWarehouse


class FrozenWarehouse(DuckDBWarehouse):
    """A copy that nothing changes until the next copy replaces it: table expressions (whose
    schema lookup costs more than most small queries), the list of tables and row counts are
    looked up once. Staging tables (``_``-prefixed) are not cached: previews create and drop
    them."""

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
    """What a reader can say about the data it shows."""

    exists: bool  # a warehouse file exists at all
    copied_at: datetime | None  # when the copy being read was taken
    stale: bool  # the warehouse changed since, but could not be copied (a build holds it)


def _wal(path: Path) -> Path:
    return path.with_name(path.name + ".wal")


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """What changes when the warehouse (or its write-ahead log) is written; None if absent."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    try:
        w = _wal(path).stat().st_mtime_ns
    except FileNotFoundError:
        w = 0
    return st.st_mtime_ns, st.st_size, w


class WarehouseSnapshot:
    """A read-only copy of the warehouse at ``source``, kept in ``folder`` (``name-N.duckdb``,
    one file per copy; the previous one is deleted once the next is open). One connection,
    shared by the threads of the process and used by one at a time (``read()``)."""

    def __init__(
        self,
        source: Path,
        folder: Path,
        *,
        name: str = "snapshot",
        threads: int = 2,
        memory_limit: str = "1GB",
        frozen: bool = True,
    ) -> None:
        self.source = Path(source)
        self.folder = Path(folder)
        self.name = name
        self.threads = threads
        self.memory_limit = memory_limit
        self.frozen = frozen
        self.version = 0  # increases with every new copy (caches key on it)
        self.copied_at: datetime | None = None
        self._lock = threading.RLock()
        self._wh: DuckDBWarehouse | None = None
        self._stamp: tuple[int, int, int] | None = None
        self._stale = False

    def refresh(self) -> bool:
        """Take a new copy if the warehouse changed. False when the current copy is kept:
        nothing changed, or a build holds the warehouse now (the copy is then ``stale``).
        Raises ``StoreError`` when there is no copy to keep (no warehouse yet, or a build holds
        it: ``WarehouseBusyError``)."""
        with self._lock:
            stamp = _stamp(self.source)
            if stamp is None:
                if self._wh is not None:
                    return False
                raise StoreError(
                    f"no warehouse at {self.source} yet: run `segone ingest` and `segone build`"
                )
            if stamp == self._stamp and self._wh is not None:
                return False
            try:
                # a read-only open takes DuckDB's shared lock: no build writes while we copy,
                # and a left-over write-ahead log is replayed into what we read
                src = DuckDBWarehouse(self.source, threads=1, memory_limit="256MB", read_only=True)
            except WarehouseBusyError:
                if self._wh is None:
                    raise WarehouseBusyError(
                        f"the warehouse {self.source} is being written (a build?) and there is "
                        "no copy of it yet; try again when the build ends"
                    ) from None
                self._stale = True
                return False
            dst = self.folder / f"{self.name}-{self.version + 1}.duckdb"
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(self.source, dst)
                wal = _wal(self.source)
                if wal.exists():
                    shutil.copyfile(wal, _wal(dst))
                else:
                    _wal(dst).unlink(missing_ok=True)
                stamp = _stamp(self.source)
            finally:
                src.close()
            self._open(dst)
            self._stamp = stamp
            self.version += 1
            self.copied_at = datetime.now(UTC)
            self._stale = False
            return True

    def _open(self, path: Path) -> None:
        kind = FrozenWarehouse if self.frozen else DuckDBWarehouse
        # read-write on the private copy: DuckDB replays a copied write-ahead log only then, and
        # previews stage temporary tables; nothing writes to the copy's permanent tables
        wh = kind(path, threads=self.threads, memory_limit=self.memory_limit, read_only=False)
        old, self._wh = self._wh, wh
        if old is not None:
            _drop(old)

    def state(self) -> SnapshotState:
        return SnapshotState(self.source.exists(), self.copied_at, self._stale)

    def warehouse(self) -> DuckDBWarehouse:
        """The current copy (refreshed first), for a caller that does not share it between
        threads (a notebook)."""
        with self._lock:
            self.refresh()
            assert self._wh is not None
            return self._wh

    @contextmanager
    def read(self) -> Iterator[DuckDBWarehouse]:
        """The current copy (refreshed first), held for one request: requests take turns on
        the one connection."""
        with self._lock:
            yield self.warehouse()

    def close(self) -> None:
        """Close the copy and delete its files."""
        with self._lock:
            if self._wh is not None:
                _drop(self._wh)
                self._wh = None
            self._stamp = None


def _drop(wh: DuckDBWarehouse) -> None:
    """Close a copy and delete its files (closing at interpreter exit may fail: nothing more
    is to be done then)."""
    path = Path(wh.path)
    with contextlib.suppress(Exception):
        wh.close()
    for p in (path, _wal(path)):
        p.unlink(missing_ok=True)

"""The one warehouse copy the dashboard and notebooks read (``segone.store.snapshot``): a new
copy when the warehouse changed, the old one kept (and said stale) while a writer holds it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from segone.exceptions import StoreError, WarehouseBusyError
from segone.store.duckdb import DuckDBWarehouse
from segone.store.snapshot import FrozenWarehouse, WarehouseSnapshot


def write(path: Path, n: int) -> None:
    wh = DuckDBWarehouse(path, threads=1, memory_limit="256MB")
    try:
        wh.backend.raw_sql(f"CREATE OR REPLACE TABLE t AS SELECT range AS x FROM range({n})")
    finally:
        wh.close()


def test_copies_follow_the_warehouse_and_a_writer_never_waits(tmp_path: Path) -> None:
    src = tmp_path / "warehouse.duckdb"
    snap = WarehouseSnapshot(src, tmp_path / "copies", threads=1)
    with pytest.raises(StoreError, match="no warehouse"):
        snap.refresh()
    write(src, 3)
    with snap.read() as wh:
        assert isinstance(wh, FrozenWarehouse) and wh.count("t") == 3
    assert snap.version == 1 and snap.refresh() is False  # nothing changed
    write(src, 5)
    with snap.read() as wh:
        assert wh.count("t") == 5
    assert snap.version == 2
    assert sorted(p.name for p in (tmp_path / "copies").iterdir()) == ["snapshot-2.duckdb"]

    # another process holds the file for writing, as a build does while it runs
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; c = duckdb.connect(sys.argv[1]);"
            "c.execute('insert into t select 99'); c.execute('checkpoint');"
            "print('holding', flush=True); sys.stdin.read()",
            str(src),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        assert snap.refresh() is False
        state = snap.state()
        assert state.exists and state.stale and state.copied_at is not None
        with snap.read() as wh:
            assert wh.count("t") == 5  # the previous copy keeps answering
        fresh = WarehouseSnapshot(src, tmp_path / "other", threads=1)
        with pytest.raises(WarehouseBusyError, match="no copy of it yet"):
            fresh.refresh()
    finally:
        holder.communicate("", timeout=60)
    assert snap.refresh() is True and not snap.state().stale
    assert snap.warehouse().to_arrow(snap.warehouse().table("t")).num_rows == 6
    snap.close()
    assert list((tmp_path / "copies").iterdir()) == []


def test_an_unfrozen_copy_sees_tables_made_on_it(tmp_path: Path) -> None:
    src = tmp_path / "warehouse.duckdb"
    write(src, 2)
    snap = WarehouseSnapshot(src, tmp_path / "copies", frozen=False)
    wh = snap.warehouse()
    assert wh.tables() == ["t"]
    wh.stage("_scratch", pa.table({"a": [1]}), append=False)
    assert "_scratch" in wh.tables()
    snap.close()

"""segone.open(): a read-only project for notebooks that never stands in the way of a build."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

import segone
from segone.exceptions import NotFoundError, SegoneError
from tests.cli_project import make_project

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def proj(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project(tmp_path_factory.mktemp("nb"))


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from segone.cli import main; main()", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_tables_come_out_as_arrow_pandas_and_polars(proj):
    with segone.open(proj) as p:
        customers = p.customers()
        assert isinstance(customers.to_arrow(), pa.Table) and len(customers) == 80
        df = customers.to_pandas()
        assert isinstance(df, pd.DataFrame) and df.customer_id.is_unique
        person = p.profile("PERSON3@example.com")  # any spelling
        assert person["profile"]["orders"] == 4 and person["profile"]["crm_stage"] == "lead"
        vip = p.segment("vip")
        assert len(vip) == 4 and set(vip.to_pandas().customer_id) <= set(df.customer_id)
        try:
            import polars  # noqa: F401
        except ImportError:
            with pytest.raises(SegoneError, match="pip install polars"):
                vip.to_polars()
        else:
            assert vip.to_polars().height == 4
        sizes = p.segments().to_pandas().set_index("segment")
        assert sizes.loc["vip", "members"] == 4
        n = p.sql("select count(*) as n from profiles where crm_stage = 'lead'").to_pandas()
        assert int(n.n[0]) == 27
        assert "profiles" in p.tables() and len(p.table("orders")) == 200
        with pytest.raises(NotFoundError, match="did you mean 'vip'"):
            p.segment("vipp")
        with pytest.raises(NotFoundError):
            p.profile("nobody@example.com")


def test_a_notebook_never_blocks_a_build_and_sees_the_next_one(proj):
    p = segone.open(proj)
    before = p.customers().to_pandas()
    assert str(before.as_of.max().date()) == "2024-12-31"
    # the notebook is open and has read: a build (another process) must still run
    r = _cli("build", "-p", str(proj), "--as-of", "2024-11-30", "--no-online")
    assert r.returncode == 0, r.stderr
    after = p.customers().to_pandas()  # the next call takes a new snapshot
    assert str(after.as_of.max().date()) == "2024-11-30"
    p.close()


def test_while_a_writer_holds_the_warehouse_the_notebook_reads_its_last_snapshot(proj):
    p = segone.open(proj)
    n = len(p.customers())
    # a process holding the warehouse for writing, as a build does while it runs
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; c = duckdb.connect(sys.argv[1]);"
            "c.execute('create or replace table nb_probe as select 1 as x');"
            "print('holding', flush=True); sys.stdin.read()",
            str(proj / "warehouse.duckdb"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        t = time.perf_counter()
        assert p.refresh() is False  # the writer has it: keep the snapshot, do not wait
        assert len(p.customers()) == n
        assert time.perf_counter() - t < 30
        # a notebook opened now, with no snapshot yet, says why it cannot read
        with pytest.raises(SegoneError, match="being written"):
            segone.open(proj).customers()
    finally:
        assert holder.stdin is not None and holder.stdout is not None
        holder.stdin.close()
        holder.wait(timeout=60)
        holder.stdout.close()
    assert "nb_probe" in p.tables()  # the writer is gone: the next call sees what it wrote
    p.close()

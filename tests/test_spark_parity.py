"""One pipeline, two engines: the generated store built on DuckDB and on Spark ``local[2]``
gives the same output tables.

Ids, identity maps, refusals, matches, segment memberships and transitions must be equal
exactly; only floating-point columns have a tolerance, 1e-9, because each engine sums a
group's rows in its own order (and takes ``log2`` with its own library). The store
(``segone.demo.sample_project``, also what ``bench/scale_bench.py`` builds) is ingested once
into DuckDB, the raw tables are copied to the Spark warehouse as Parquet (ingest on Spark is
tested in ``test_spark_ingest.py``), and both engines run the same build and a segment
snapshot, Spark with one JVM for the module and ``SMALL_DATA`` settings.

Skipped, loudly, when pyspark or Java is missing; run alone with ``pytest -m spark``.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from segone.store.spark import spark_available

PEOPLE = int(os.environ.get("SEGONE_PARITY_PEOPLE", "120"))
WHY = spark_available()

pytestmark = [
    pytest.mark.spark,
    # py4j leaves its sockets to the JVM's shutdown; not a leak of ours
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.slow,
    pytest.mark.timeout(2400),  # the bound of a loaded shared machine, not the target
    pytest.mark.skipif(
        WHY is not None,
        reason=f"SKIPPED SPARK PARITY: {WHY}. Install the spark extra and a JRE to run it.",
    ),
]

RAW = [
    "events",
    "orders",
    "order_lines",
    "products",
    "customers",
    "interactions",
    "quarantine",
    "enrichments",
    "loads",
    "project_secrets",
]

#: table -> key columns (rows sorted by them) and columns left out (times of the run itself)
OUTPUTS: dict[str, tuple[list[str], set[str]]] = {
    "customer_map": (["node"], set()),
    "record_customers": (["record_table", "record_key"], set()),
    "identity_refusals": (["node"], {"built_at"}),
    "identity_matches": (["unique_id_l", "unique_id_r"], set()),
    "identity_history": (["event", "customer_id", "other_id"], {"at"}),
    "interaction_sentiment": (["interaction_id"], set()),
    "profiles": (["customer_id"], set()),
    "scores": (["customer_id"], set()),
    "recommendations": (["customer_id", "rank"], set()),
    "category_affinity": (["customer_id", "category"], set()),
    "segment_memberships": (["customer_id", "segment", "entered_at"], set()),
    "transitions": (["customer_id", "kind", "at", "from_segment", "to_segment"], set()),
    "segment_snapshots": (["at"], set()),
}


def _run(wh: Any, project: Any) -> None:
    """The build and a segment snapshot, the same calls on either engine."""
    from segone.demo import sample_as_of
    from segone.pipeline.backfill import backfill
    from segone.pipeline.build import build
    from segone.segments import project_catalogue

    s = project.settings
    end = sample_as_of()
    build(wh, as_of=end, identity=s.identity, stages=s.lifecycle, models=s.models)
    cat = project_catalogue(project, wh)
    # one snapshot: every membership entered, every lifecycle stage a transition from none
    backfill(wh, cat, end, end, 30, s.lifecycle, models=s.models)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, pd.DataFrame]]]:
    from segone.demo import sample_project
    from segone.store.copy import copy_tables
    from segone.store.duckdb import DuckDBWarehouse
    from segone.store.spark import SMALL_DATA, SparkWarehouse

    root = tmp_path_factory.mktemp("parity")
    project = sample_project(root / "p", customers=PEOPLE, seed=11)
    raw = root / "p" / "warehouse.duckdb"
    shutil.copy(raw, root / "raw.duckdb")

    out: dict[str, dict[str, pd.DataFrame]] = {"duckdb": {}, "spark": {}}
    with DuckDBWarehouse(raw) as wh:
        _run(wh, project)
        for name in OUTPUTS:
            out["duckdb"][name] = wh.execute(wh.table(name))
    with (
        DuckDBWarehouse(root / "raw.duckdb", read_only=True) as src,
        SparkWarehouse(root / "spark", conf=SMALL_DATA) as wh,
    ):
        wh.ensure_tables()
        copy_tables(src, wh, [n for n in RAW if n in src.tables()])
        _run(wh, project)
        for name in OUTPUTS:
            out["spark"][name] = wh.execute(wh.table(name))
    yield out


def _norm(v: Any) -> Any:
    """A cell as plain Python: arrays as lists, maps as sorted pairs, NaN/NaT as None."""
    if isinstance(v, np.ndarray):
        v = v.tolist()
    if isinstance(v, dict):
        return sorted((k, _norm(x)) for k, x in v.items())
    if isinstance(v, list | tuple):
        if v and all(isinstance(x, tuple) and len(x) == 2 for x in v):  # map as pairs
            return sorted((k, _norm(x)) for k, x in v)
        return [_norm(x) for x in v]
    if v is None or v is pd.NaT or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, pd.Timestamp):
        return v.to_pydatetime()
    if isinstance(v, np.generic):
        return v.item()
    return v


def _same(a: Any, b: Any) -> bool:
    a, b = _norm(a), _norm(b)
    if isinstance(a, float) and isinstance(b, float | int):
        return math.isclose(a, float(b), rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@pytest.mark.parametrize("table", list(OUTPUTS))
def test_every_output_table_is_the_same_on_spark(
    built: dict[str, dict[str, pd.DataFrame]], table: str
) -> None:
    keys, skip = OUTPUTS[table]
    d, s = built["duckdb"][table], built["spark"][table]
    assert list(s.columns) == list(d.columns), table
    cols = [c for c in d.columns if c not in skip]
    assert len(d) == len(s), f"{table}: {len(d)} rows on DuckDB, {len(s)} on Spark"
    if table in ("profiles", "customer_map", "segment_memberships"):
        assert len(d) > 0, f"{table} is empty: the comparison would prove nothing"
    order = keys or cols
    d = d.sort_values(order, kind="stable", na_position="first").reset_index(drop=True)
    s = s.sort_values(order, kind="stable", na_position="first").reset_index(drop=True)
    for c in cols:
        bad = [i for i in range(len(d)) if not _same(d.at[i, c], s.at[i, c])]
        assert not bad, (
            f"{table}.{c}: {len(bad)} of {len(d)} rows differ, e.g. DuckDB "
            f"{d.at[bad[0], c]!r} vs Spark {s.at[bad[0], c]!r} ({dict(d.loc[bad[0], order])})"
        )

"""``segone ingest`` on a project whose warehouse is Spark (``[warehouse] engine = "spark"``).

The loader runs in a local DuckDB and the rows it adds are appended to the Spark warehouse
(``segone.ingest.relay``): the Shopify exports, loaded through the CLI, must give the same
rows, quarantine and counts as the same files loaded into a DuckDB project, and a second load
of a file must add nothing.

Skipped, loudly, when pyspark or Java is missing; run alone with ``pytest -m spark``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from segone.cli import app
from segone.store.spark import spark_available

WHY = spark_available()
EXPORTS = Path(__file__).parent / "fixtures" / "exports"
FILES = [
    ("products", "shopify_products_export.csv"),
    ("customers", "shopify_customers_export.csv"),
    ("orders", "shopify_orders_export_1.csv"),
]
#: columns that name the load itself (its id and time), not the data
RUN = {"load_id", "loaded_at", "quarantined_at", "started_at", "finished_at"}

pytestmark = [
    pytest.mark.spark,
    # py4j leaves its sockets to the JVM's shutdown; not a leak of ours
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.slow,
    pytest.mark.timeout(1500),
    pytest.mark.skipif(
        WHY is not None,
        reason=f"SKIPPED SPARK INGEST: {WHY}. Install the spark extra and a JRE to run it.",
    ),
]
runner = CliRunner()


def _project(root: Path, engine: str) -> Path:
    res = runner.invoke(app, ["init", str(root)])
    assert res.exit_code == 0, res.output
    cfg = root / "segone.toml"
    text = re.sub(r'^engine = "duckdb"', f'engine = "{engine}"', cfg.read_text(), flags=re.M)
    cfg.write_text(text)
    return root


def _ingest(root: Path, kind: str, name: str) -> dict[str, object]:
    res = runner.invoke(app, ["ingest", kind, str(EXPORTS / name), "-p", str(root), "--json"])
    assert res.exit_code == 0, res.output
    (got,) = json.loads(res.output)
    return dict(got)


def _tables(root: Path) -> dict[str, pd.DataFrame]:
    from segone.project import Project

    out = {}
    with Project.open(root).warehouse(read_only=True) as wh:
        for name in ("products", "customers", "orders", "order_lines", "quarantine", "loads"):
            df = wh.execute(wh.table(name))
            df = df[
                [c for c in df.columns if c not in RUN and c not in ("started_at", "finished_at")]
            ]
            out[name] = df.sort_values(list(df.columns)[:4]).reset_index(drop=True)
    return out


def test_cli_ingest_on_spark_loads_what_duckdb_loads(tmp_path: Path) -> None:
    spark = _project(tmp_path / "spark", "spark")
    duck = _project(tmp_path / "duck", "duckdb")
    for kind, name in FILES:
        on_spark, on_duck = _ingest(spark, kind, name), _ingest(duck, kind, name)
        for key in ("rows_read", "loaded", "lines_loaded", "duplicates", "rejected", "problems"):
            assert on_spark[key] == on_duck[key], (name, key, on_spark[key], on_duck[key])
        assert int(on_spark["loaded"]) > 0, name  # type: ignore[call-overload]
    assert (spark / "spark-warehouse" / "_manifest.json").exists()
    s, d = _tables(spark), _tables(duck)
    for name in s:
        assert len(s[name]) == len(d[name]), name
        pd.testing.assert_frame_equal(
            s[name].drop(columns=["path"], errors="ignore").astype(str),
            d[name].drop(columns=["path"], errors="ignore").astype(str),
            obj=name,
        )
    # a second load of a file adds nothing: the keys already on Spark were checked
    again = _ingest(spark, "orders", "shopify_orders_export_1.csv")
    assert again["loaded"] == 0 and int(again["duplicates"]) > 0  # type: ignore[call-overload]
    assert len(_tables(spark)["orders"]) == len(s["orders"])

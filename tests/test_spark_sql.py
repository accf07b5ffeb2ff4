"""Expressions whose SQL Spark reads differently from DuckDB, each compared on both engines.

``strip()`` is the one that split customers: Ibis writes Python's whitespace as the literal
``' \\t\\n\\r\\v\\f'`` and Spark's parser reads ``\\v`` and ``\\f`` as the letters v and f, so
``"fowens@x.com".strip()`` was ``owens@x.com`` on Spark.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import ibis
import pyarrow as pa
import pytest

from segone.store.duckdb import DuckDBWarehouse
from segone.store.spark import spark_available

WHY = spark_available()
pytestmark = [
    pytest.mark.spark,
    # py4j leaves its sockets to the JVM's shutdown; not a leak of ours
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.slow,
    pytest.mark.timeout(600),
    pytest.mark.skipif(
        WHY is not None,
        reason=f"SKIPPED SPARK SQL: {WHY}. Install the spark extra and a JRE to run it.",
    ),
]

VALUES = ["fowens@x.com", " vf ", "\tfive\x0b", "\x0cv\n", "ffvv", "", None, "a b"]


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[object, object]]:
    from segone.store.spark import SMALL_DATA, SparkWarehouse

    root = Path(tmp_path_factory.mktemp("sparksql"))
    data = pa.table({"i": list(range(len(VALUES))), "s": VALUES})
    duck = DuckDBWarehouse()
    spark = SparkWarehouse(root / "spark", conf=SMALL_DATA)
    for wh in (duck, spark):
        wh.stage("t", data, append=False)
    yield duck, spark
    duck.close()
    spark.close()


@pytest.mark.parametrize(
    "make",
    [
        lambda s: s.strip(),
        lambda s: s.lstrip(),
        lambda s: s.rstrip(),
        lambda s: ibis.literal("v\x0bf") + s,
        lambda s: s.strip().length(),
    ],
    ids=["strip", "lstrip", "rstrip", "literal-with-vt", "strip-length"],
)
def test_string_expressions_agree(engines: tuple[object, object], make: object) -> None:
    got = []
    for wh in engines:
        t = wh.table("t")  # type: ignore[attr-defined]
        df = wh.execute(t.select("i", v=make(t.s)).order_by("i"))  # type: ignore[attr-defined,operator]
        got.append([None if v is None or v != v else v for v in df.v.tolist()])
    assert got[0] == got[1]
    assert got[0][0] in ("fowens@x.com", "v\x0bffowens@x.com", 12)  # the f survives


def test_epoch_seconds_keep_the_fraction(engines: tuple[object, object]) -> None:
    """Spark's unix_timestamp drops the fraction of a second; DuckDB's epoch keeps it (inside
    a query: a bare epoch_seconds() result is cast to an integer by Ibis)."""
    from datetime import UTC, datetime

    when = ibis.literal(datetime(2024, 3, 1, 23, 59, 59, 999999, tzinfo=UTC))
    days = when.epoch_seconds() / 86400.0
    got = [float(wh.execute(days)) for wh in engines]  # type: ignore[attr-defined]
    assert got[0] == got[1] == 1709337599.999999 / 86400.0

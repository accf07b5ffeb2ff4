"""The fast paths of value parsing (plain numbers, ISO date-times read as they are) give exactly
what the general rewriting gives, for the values they take and the ones next to them."""

from __future__ import annotations

import ibis
import pandas as pd
import pytest

from segone.ingest import formats
from segone.ingest.kinds import Field
from segone.ingest.validate import parse_value
from segone.schema import TS

TIMES = [
    "2024-05-05",
    "2024-05-05T18:34:00Z",
    "2024-05-05 18:34:00",
    "2024-05-05T18:34",
    "2024-05-05T18:34:00.123456Z",
    "2024-05-05T18:34:00+02:00",
    "2024-05-05T18:34:00-0500",
    "2024-05-05T18:34:00+05",
    "2024-05-05 18:34:00 -0500",
    "2024-02-30T10:00:00Z",
    "2024-13-01",
    "20240505",
    "20240505183400",
    "2024/05/05 10:00",
    "05/06/2024",
    "1715000000",
    "1715000000123",
    "2024-05-05T18:34:00 America/New_York",
    "not a date",
    None,
]
NUMBERS = [
    "42",
    "-7",
    "3.50",
    "007",
    "-0.5",
    "1e3",
    ".5",
    "+5",
    "1,234.50",
    "$42.00",
    "USD 12",
    "12 EUR",
    "1 234,5",
    "1.234,50",
    "inf",
    "nan",
    "12abc",
    "99999999999999999999999",
    None,
]


@pytest.fixture(scope="module")
def con():
    c = ibis.duckdb.connect()
    c.raw_sql("SET TimeZone = 'UTC'")
    yield c
    c.disconnect()


def _column(con, values: list[str | None], expr) -> list:
    t = ibis.memtable(pd.DataFrame({"s": pd.Series(values, dtype="object")}))
    out = con.execute(t.select(v=expr(t.s)))["v"]
    return [None if pd.isna(x) else x for x in out]


@pytest.mark.parametrize("order", [None, formats.DMY, formats.MDY])
def test_timestamps_and_dates_as_the_rewrite_reads_them(con, order):
    ts, day = Field("ts", "timestamp"), Field("d", "date")
    general_ts = _column(
        con,
        TIMES,
        lambda s: ibis.cases(
            (
                s.re_search(r"^\d{9,10}(\.\d+)?$"),
                (s.try_cast("float64") * 1_000).cast("int64").as_timestamp("ms").cast(TS),
            ),
            (
                s.re_search(r"^\d{12,13}$"),
                s.try_cast("float64").cast("int64").as_timestamp("ms").cast(TS),
            ),
            else_=formats.datetime_text(s, order).try_cast(TS),
        ),
    )
    assert _column(con, TIMES, lambda s: parse_value(ts, s, date_order=order)) == general_ts
    general_day = _column(con, TIMES, lambda s: formats.datetime_text(s, order).try_cast("date"))
    assert _column(con, TIMES, lambda s: parse_value(day, s, date_order=order)) == general_day
    # the fast path is taken for the plain ISO values, and reads them
    assert general_ts[1] is not None and general_day[0] is not None


@pytest.mark.parametrize("decimal", [".", ","])
def test_numbers_as_the_rewrite_reads_them(con, decimal):
    fast = _column(con, NUMBERS, lambda s: formats.number_value(s, decimal))
    slow = _column(con, NUMBERS, lambda s: formats.rewritten_number(s, decimal))
    assert [repr(x) for x in fast] == [repr(x) for x in slow]
    assert fast[0] == 42.0 and fast[1] == -7.0


def test_content_hashes_render_instants_as_the_cast_does():
    # records loaded by earlier versions must keep matching: the hash's text of an instant is
    # the engine's own cast, in UTC, to the microsecond
    from segone.ingest.loader import _hash, _text

    con = ibis.duckdb.connect()
    con.raw_sql("SET TimeZone = 'UTC'")
    texts = [
        "2024-05-05 18:34:00+00",
        "2024-05-05 18:34:00.5+00",
        "1999-12-31 23:59:59.999999+00",
        "1900-01-01 00:00:00+00",
        "2200-06-30 12:00:00.000001+00",
        None,
    ]
    t = ibis.memtable({"s": texts}).mutate(ts=ibis._.s.cast(TS))
    got = con.to_pyarrow(
        t.select(
            fast=_text(t.ts),
            cast=t.ts.cast("string"),
            h=_hash([t.ts, t.s]),
            old=ibis.literal("|~|")
            .join([t.ts.cast("string").fill_null("~null~"), t.s.fill_null("~null~")])
            .hexdigest("md5"),
        )
    ).to_pylist()
    assert [r["fast"] for r in got] == [r["cast"] for r in got] == texts
    assert [r["h"] for r in got] == [r["old"] for r in got]

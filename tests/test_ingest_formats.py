"""File formats real exports use: encodings, delimiters, headerless text, zip/gzip, offsets and
named zones, day/month dates, decimal commas and currency amounts; broken files fail in one line."""

from __future__ import annotations

import gzip
import zipfile
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import ibis
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from segone.cli import app
from segone.exceptions import FileFormatError
from segone.ingest import formats, ingest_file
from segone.ingest.kinds import Field, get_kind
from segone.ingest.readers import open_reader
from segone.ingest.validate import clean, parse_value
from tests.conftest import write

TS_FIELD = Field("ts", "timestamp")
DATE_FIELD = Field("birth_date", "date")
AMOUNT = Field("amount", "float")


@pytest.fixture(scope="module")
def con():
    c = ibis.duckdb.connect()
    c.raw_sql("SET TimeZone = 'UTC'")
    yield c
    c.disconnect()


def parse_all(con, f: Field, values: list[str], **kw) -> list:
    t = ibis.memtable(pd.DataFrame({"s": values}, dtype="object"))
    out = con.to_pyarrow(t.select(v=parse_value(f, clean(t.s), **kw)))
    return out.column("v").to_pylist()


# -- hypothesis: the warehouse reads what Python writes ------------------------------------------
# (strftime pattern, its date order) for timestamps written with an explicit offset
TS_FORMATS = [
    ("%Y-%m-%dT%H:%M:%S%z", None),  # +0530
    ("%Y-%m-%d %H:%M:%S %z", None),  # Shopify: "2024-05-05 18:34:00 -0500"
    ("%Y-%m-%dT%H:%M:%S{colon}", None),  # +05:30
    ("%d/%m/%Y %H:%M:%S %z", formats.DMY),
    ("%m/%d/%Y %H:%M:%S%z", formats.MDY),
    ("%d.%m.%Y %H:%M:%S %z", formats.DMY),
    ("%Y%m%d%H%M%S", None),  # naive: read in the session zone (UTC here)
    ("%d-%m-%Y %H:%M", formats.DMY),
    # month names, 12-hour clocks and two-digit years (as Python's %y: 00-68 are 20xx)
    ("%b %d, %Y %I:%M %p", None),  # "May 05, 2024 06:34 PM"
    ("%A, %B %d, %Y %I:%M:%S %p", None),
    ("%d-%b-%y %H:%M:%S", None),  # "05-May-24 18:34:00"
    ("%m/%d/%y %I:%M %p", formats.MDY),  # Excel, en-US
    ("%d %B %Y %H:%M", None),
]


def _fmt(d: datetime, pattern: str) -> str:
    if "{colon}" in pattern:
        off = d.strftime("%z")
        return d.strftime(pattern.replace("{colon}", "")) + off[:3] + ":" + off[3:]
    return d.strftime(pattern)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.datetimes(min_value=datetime(1901, 1, 1), max_value=datetime(2199, 12, 31)),
            st.one_of(st.just(0), st.integers(min_value=-12 * 4, max_value=14 * 4)),
            st.booleans(),
        ),
        min_size=1,
        max_size=20,
    ),
    st.sampled_from(TS_FORMATS),
)
def test_timestamps_read_as_python_reads_them(con, rows, pattern_order):
    pattern, order = pattern_order
    values, expected = [], []
    for naive, quarter_hours, zulu in rows:
        tz = timezone(timedelta(minutes=15 * quarter_hours))
        d = naive.replace(microsecond=0, tzinfo=tz)
        if "%z" not in pattern and "{colon}" not in pattern:
            d = d.replace(tzinfo=UTC)
        text = _fmt(d, pattern)
        py = datetime.strptime(text, pattern.replace("{colon}", "%z"))
        expected.append(py if py.tzinfo else py.replace(tzinfo=UTC))
        if zulu and "%z" in pattern and d.utcoffset() == timedelta(0):
            text = text.replace(" +0000", "Z").replace("+0000", "Z")  # UTC written as Z
        values.append(text)
    got = parse_all(con, TS_FIELD, values, date_order=order)
    assert got == [e.astimezone(UTC) for e in expected], values


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 12, 31)), min_size=1),
    st.sampled_from(
        [
            ("%Y%m%d", None),
            ("%d/%m/%Y", formats.DMY),
            ("%m/%d/%Y", formats.MDY),
            ("%Y/%m/%d", None),
            ("%d-%b-%Y", None),
            ("%B %d, %Y", None),
            ("%m/%d/%y", formats.MDY),
            ("%d.%m.%y", formats.DMY),
        ]
    ),
)
def test_dates_read_as_python_reads_them(con, days, pattern_order):
    pattern, order = pattern_order
    values = [d.strftime(pattern) for d in days]
    got = parse_all(con, DATE_FIELD, values, date_order=order)
    assert got == [datetime.strptime(v, pattern).date() for v in values]


def _written(d: Decimal, decimal: str, group: str | None, currency: str) -> str:
    text = f"{d:,.2f}" if group else f"{d:.2f}"  # Python writes 1,234.50
    if decimal == ",":
        text = text.replace(",", "\0").replace(".", ",").replace("\0", group or "")
    elif group:
        text = text.replace(",", group)
    return currency.replace("X", text)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.decimals(min_value=0, max_value=10**9, places=2, allow_nan=False),
            st.sampled_from(["X", "$X", "€ X", "X USD", "£X", "X €", "EUR X"]),
        ),
        min_size=1,
        max_size=20,
    ),
    st.sampled_from([".", ","]),
    st.sampled_from([None, "thousands", " ", "\u00a0", "'"]),
)
def test_amounts_read_as_decimal_reads_them(con, rows, decimal, group):
    sep = ("," if decimal == "." else ".") if group == "thousands" else group
    values = [_written(d, decimal, sep, cur) for d, cur in rows]
    got = parse_all(con, AMOUNT, values, decimal=decimal)
    assert got == [float(d) for d, _ in rows], values
    # and the file-level decision agrees with how the values were written when any decides
    dot, comma = formats.decimal_votes(values)
    if dot or comma:
        assert formats.choose_decimal(dot, comma, ",")[0] == decimal


def test_number_shapes(con):
    got = parse_all(con, AMOUNT, ["1,234", "1,23,4", "12.5", "-3", "1e3", "nan", "$-4.50"])
    assert got == [1234.0, None, 12.5, -3.0, 1000.0, None, -4.5]
    got = parse_all(con, AMOUNT, ["1.234", "12,5", "12.5", "1.234.567,89"], decimal=",")
    assert got == [1234.0, 12.5, None, 1234567.89]


def test_named_zones_and_utc_suffixes(con):
    got = parse_all(
        con,
        TS_FIELD,
        [
            "2024-05-05 18:34:00 America/New_York",
            "2024-01-05 18:34:00 Europe/Paris",
            "2024-05-05T18:34:00Z",
            "2024-05-05 18:34:00 UTC",
            "2024-05-05 18:34:00 -05",
        ],
    )
    assert got == [
        datetime(2024, 5, 5, 22, 34, tzinfo=UTC),
        datetime(2024, 1, 5, 17, 34, tzinfo=UTC),
        datetime(2024, 5, 5, 18, 34, tzinfo=UTC),
        datetime(2024, 5, 5, 18, 34, tzinfo=UTC),
        datetime(2024, 5, 5, 23, 34, tzinfo=UTC),
    ]


# -- per-file decisions ----------------------------------------------------------------------
def test_date_order_decided_by_a_day_over_12():
    assert formats.date_order_of(["05/06/2024", "13/06/2024"]).order == formats.DMY
    assert formats.date_order_of(["05/06/2024", "06/13/2024 10:00"]).order == formats.MDY
    votes = formats.date_order_of(["05/06/2024", "2024-01-01"])
    assert (votes.order, votes.n) == (None, 1)
    assert formats.date_order_of(["2024-01-31"]).n == 0
    assert formats.parse_date_format("DD/MM/YYYY") == formats.DMY
    assert formats.parse_date_format("%m/%d/%Y") == formats.MDY
    with pytest.raises(FileFormatError, match="DMY"):
        formats.parse_date_format("YMD")


def test_decimal_rule():
    assert formats.decimal_votes(["1,234.50", "12,5"]) == (1, 1)
    assert formats.decimal_votes(["1,234", "1.234"]) == (0, 0)  # both ambiguous
    assert formats.decimal_votes(["1,234,567", "42.00 USD"]) == (2, 0)
    assert formats.choose_decimal(0, 0, ";")[0] == ","
    assert formats.choose_decimal(0, 0, ",")[0] == "."


ORDERS_EU = """\
order_id;customer_id;ts;amount
o1;c1;05/06/2024 10:00;1.234,50
o2;c2;13/06/2024;€ 12,00
"""


def test_semicolon_file_with_day_first_dates_and_decimal_commas(wh, tmp_path):
    r = ingest_file(wh, "orders", write(tmp_path / "o.csv", ORDERS_EU))
    assert (r.loaded, r.rejected) == (2, 0)
    o = wh.execute(wh.table("orders").order_by("order_id"))
    assert list(o.amount) == [1234.5, 12.0]
    assert o.ts[0] == pd.Timestamp("2024-06-05T10:00:00Z")


def test_ambiguous_dates_need_date_format(wh, tmp_path):
    path = write(tmp_path / "o.csv", "order_id,customer_id,ts,amount\no1,c1,05/06/2024,3\n")
    with pytest.raises(FileFormatError, match=r"o.csv: .*'ts'.*--date-format DMY"):
        ingest_file(wh, "orders", path)
    r = ingest_file(wh, "orders", path, date_format="MDY")
    assert r.loaded == 1
    assert wh.execute(wh.table("orders")).ts[0] == pd.Timestamp("2024-05-06T00:00:00Z")


def test_a_date_against_the_files_order_is_quarantined_with_the_order(wh, tmp_path):
    text = "order_id,customer_id,ts,amount\no1,c1,13/06/2024,3\no2,c1,06/13/2024,3\n"
    with pytest.raises(FileFormatError, match=r"'ts' mixes day-first .'13/06/2024'. and month"):
        ingest_file(wh, "orders", write(tmp_path / "o.csv", text))
    text += "o3,c1,14/06/2024,3\n"
    r = ingest_file(wh, "orders", write(tmp_path / "o.csv", text))
    assert (r.loaded, r.rejected) == (2, 1)
    reason = wh.execute(wh.table("quarantine")).reason[0]
    assert "'06/13/2024'" in reason and "read as DD/MM/YYYY" in reason


def test_febrl_style_yyyymmdd_birth_dates(wh, tmp_path):
    text = (
        "rec_id, given_name, surname, street_number, address_1, postcode, date_of_birth\n"
        "rec-1-org, lachlan, berry, 69, giblin street, 4814, 19990219\n"
        "rec-2-org, , waller, 6, tullaroop street, 4011, 19081209\n"
    )
    r = ingest_file(
        wh, "customers", write(tmp_path / "f.csv", text), mapping={"source_id": "rec_id"}
    )
    assert (r.loaded, r.rejected) == (2, 0)
    c = wh.execute(wh.table("customers").order_by("source_id"))
    assert [d.date() for d in c.birth_date] == [date(1999, 2, 19), date(1908, 12, 9)]


# -- encodings -------------------------------------------------------------------------------
CUSTOMERS = "source_id,name,email\nc1,José Müller,jose@example.com\nc2,Zoë €uro,zoe@example.com\n"


@pytest.mark.parametrize(
    ("encoding", "bom", "shown"),
    [
        ("utf-8", b"", "utf-8"),
        ("utf-8", b"\xef\xbb\xbf", "utf-8 (BOM)"),
        ("utf-16", b"", "utf-16"),  # Python writes the BOM
        ("cp1252", b"", "windows-1252"),
    ],
)
def test_encodings_detected(wh, tmp_path, encoding, bom, shown):
    path = tmp_path / "c.csv"
    path.write_bytes(bom + CUSTOMERS.replace("\n", "\r\n").encode(encoding))
    reader = open_reader(path, get_kind("customers"), fmt=None, mapping={}, chunk_rows=100)
    assert reader.detected.encoding == shown
    r = ingest_file(wh, "customers", path)
    assert (r.loaded, r.rejected) == (2, 0)
    names = list(wh.execute(wh.table("customers").order_by("source_id")).full_name)
    assert names == ["José Müller", "Zoë €uro"]


def test_windows_1252_past_the_sniffed_head_is_one_line_error(wh, tmp_path):
    body = "".join(f"c{i},Name {i},n{i}@example.com\n" for i in range(40_000))
    path = tmp_path / "late.csv"
    path.write_bytes(
        ("source_id,name,email\n" + body).encode() + "c,José,j@x.io\n".encode("cp1252")
    )
    assert path.stat().st_size > formats.SAMPLE_BYTES
    with pytest.raises(FileFormatError, match=r"late.csv: not valid UTF-8.*--encoding"):
        ingest_file(wh, "customers", path)
    r = ingest_file(wh, "customers", path, encoding="cp1252")
    assert r.loaded == 40_001


def test_forced_encoding_is_used(wh, tmp_path):
    path = tmp_path / "c.csv"
    path.write_bytes(CUSTOMERS.replace("€", "E").encode("latin-1"))
    ingest_file(wh, "customers", path, encoding="latin-1")
    assert "José Müller" in set(wh.execute(wh.table("customers")).full_name)
    with pytest.raises(FileFormatError, match="unknown encoding"):
        ingest_file(wh, "customers", path, encoding="klingon")


# -- delimiters, whitespace columns, headerless files ------------------------------------------
@pytest.mark.parametrize("delim", [";", "\t", "|"])
def test_delimiters_sniffed_from_the_first_lines(wh, tmp_path, delim):
    # the header alone has as many commas as delimiters: only the data lines decide
    text = f"source_id{delim}name, as written, sic{delim}email\nc1{delim}Doe, Jane{delim}j@x.io\n"
    text += f"c2{delim}Roe{delim}r@x.io\n"
    path = write(tmp_path / "c.txt", text)
    reader = open_reader(path, get_kind("customers"), fmt=None, mapping={}, chunk_rows=100)
    assert reader.detected.delimiter == delim
    r = ingest_file(wh, "customers", path)
    assert (r.loaded, r.rejected) == (2, 0)


CDNOW = " 00004 0001 19970101  2   29.33\r\n 00004 0001 19970118  2   29.73\r\n" + (
    " 00005 0002 19970102  1   14.96\r\n"
)


def test_cdnow_whitespace_file_without_header(wh, tmp_path):
    path = write(tmp_path / "CDNOW_sample.txt", CDNOW)
    with pytest.raises(FileFormatError, match=r"no header line.*5 columns with --columns"):
        ingest_file(wh, "orders", path)
    with pytest.raises(FileFormatError, match="--columns names 4 column"):
        ingest_file(wh, "orders", path, columns="a,b,c,d")
    cols = "customer_id,order_id,ts,quantity,amount"  # order_id: the sample id, for the test
    reader = open_reader(
        path, get_kind("orders"), fmt=None, mapping={}, chunk_rows=100, columns=cols
    )
    assert (reader.detected.delimiter, reader.detected.header) == ("whitespace", False)
    r = ingest_file(wh, "orders", path, columns=cols)
    assert (r.lines_loaded, r.rejected) == (3, 0)
    lines = wh.execute(wh.table("order_lines").order_by("_line" if False else "order_id"))
    assert sorted(lines.quantity) == [1, 2, 2]
    o = wh.execute(wh.table("orders").order_by("ts"))
    assert o.ts[0] == pd.Timestamp("1997-01-01T00:00:00Z")
    assert list(o.customer_id) == ["00004", "00005"]


def test_whitespace_stream_keeps_runs_split_across_blocks(tmp_path):
    path = tmp_path / "w.txt"
    text = "".join(f"  {i}   {i * 2}\t \t{i * 3}   \r\n" for i in range(5000)) + " 1 2 3  "
    path.write_bytes(text.encode())
    with formats.Source(path) as src:
        out = formats.Utf8Stream(src, "utf-8", whitespace=True, block=37).read()
    assert out.decode() == formats.collapse_whitespace(text)
    assert out.decode().splitlines()[7] == "7\t14\t21"
    assert out.decode().endswith("\n1\t2\t3")


# -- compression and broken files: one line, nothing already loaded touched ----------------------
def test_zip_with_one_file_loads(wh, tmp_path):
    path = tmp_path / "export.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("__MACOSX/._customers.csv", b"junk")
        zf.writestr("customers.csv", CUSTOMERS)
    r = ingest_file(wh, "customers", path)
    assert r.loaded == 2


def test_gzip_told_by_its_bytes(wh, tmp_path):
    path = tmp_path / "customers.csv"
    path.write_bytes(gzip.compress(CUSTOMERS.encode("cp1252")))
    assert ingest_file(wh, "customers", path).loaded == 2


def _zip2(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("a.csv", CUSTOMERS)
        zf.writestr("b.csv", CUSTOMERS)
    return path


def _truncated_gz(path: Path) -> Path:
    body = "source_id,name\n" + "".join(f"c{i},n{i}\n" for i in range(200_000))
    path.write_bytes(gzip.compress(body.encode(), mtime=0)[:40_000])
    return path


def _cut_after_the_head(path: Path) -> Path:
    body = "source_id,full_name\n" + "".join(
        f"c{i},name {i * 7919 % 100003}\n" for i in range(300_000)
    )
    data = gzip.compress(body.encode(), mtime=0)
    path.write_bytes(data[: len(data) * 9 // 10])
    assert len(gzip.decompress(data)[: formats.SAMPLE_BYTES]) == formats.SAMPLE_BYTES
    return path


BROKEN = {
    "late-cut.csv.gz": (_cut_after_the_head, "late-cut.csv.gz: the gzip file is truncated"),
    "empty.csv": (lambda p: write(p, ""), "empty.csv is empty"),
    "blank.csv": (lambda p: write(p, "\n\n  \n"), "blank.csv is empty"),
    "binary.csv": (lambda p: p.write_bytes(bytes(range(256)) * 40) and p, "looks binary"),
    "data.parquet.csv": (lambda p: p.write_bytes(b"PAR1" + b"\0" * 99) and p, "Parquet file"),
    "cut.csv.gz": (_truncated_gz, "cut.csv.gz: the gzip file is truncated"),
    "notgz.csv.gz": (lambda p: write(p, CUSTOMERS), "not a gzip file"),
    "two.zip": (_zip2, "two.zip: a zip must hold exactly one file, this one holds 2"),
    "bad.zip": (lambda p: p.write_bytes(b"PK\x03\x04garbage") and p, "not a readable zip"),
    "long.csv": (lambda p: write(p, "x" * (11 << 20)), "first line is over 1 MB"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_files_fail_in_one_line_and_leave_the_warehouse_alone(wh, tmp_path, name):
    ingest_file(wh, "customers", write(tmp_path / "good.csv", CUSTOMERS))
    before = {t: wh.count(t) for t in ("customers", "quarantine", "loads")}
    make, message = BROKEN[name]
    path = make(tmp_path / name)
    with pytest.raises(FileFormatError, match=message) as err:
        ingest_file(wh, "customers", path)
    assert "\n" not in str(err.value) and name in str(err.value)
    assert {t: wh.count(t) for t in before} == before


def test_a_10mb_field_is_a_quarantined_row_not_a_crash(wh, tmp_path):
    path = write(tmp_path / "big.csv", CUSTOMERS + "c3," + "x" * (10 << 20) + ",big@x.io\n")
    r = ingest_file(wh, "customers", path)
    assert (r.loaded, r.rejected) == (2, 1)
    assert "too_long(full_name)" in r.problems


def test_header_only_file_loads_nothing(wh, tmp_path):
    r = ingest_file(wh, "customers", write(tmp_path / "h.csv", "source_id,name,email\n"))
    assert (r.rows_read, r.loaded, r.rejected) == (0, 0, 0)


def test_cli_options_and_one_line_errors(tmp_path):
    runner = CliRunner()
    proj = tmp_path / "p"
    assert runner.invoke(app, ["init", str(proj)]).exit_code == 0
    path = write(tmp_path / "CDNOW_sample.txt", CDNOW)
    res = runner.invoke(app, ["ingest", "orders", str(path), "--project", str(proj)])
    assert res.exit_code != 0 and "--columns" in res.output and "Traceback" not in res.output
    res = runner.invoke(
        app,
        [
            *("ingest", "orders", str(path), "--project", str(proj)),
            *("--columns", "customer_id,order_id,ts,quantity,amount", "--delimiter", "whitespace"),
            *("--encoding", "latin-1", "--date-format", "DMY"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "loaded 2 orders (3 lines)" in res.output


def test_json_and_json_lines_in_other_encodings(wh, tmp_path):
    rows = '{"source_id": "c1", "full_name": "José €"}\n{"source_id": "c2", "full_name": "Zoë"}\n'
    jl = tmp_path / "c.jsonl"
    jl.write_bytes(rows.encode("cp1252"))
    assert ingest_file(wh, "customers", jl).loaded == 2
    doc = tmp_path / "d.json"
    doc.write_bytes(b"\xef\xbb\xbf[" + rows.replace("\n", ",", 1).strip().encode() + b"]")
    doc.write_bytes(doc.read_bytes().replace(b"c1", b"c3").replace(b"c2", b"c4"))
    assert ingest_file(wh, "customers", doc).loaded == 2
    names = set(wh.execute(wh.table("customers")).full_name)
    assert {"José €", "Zoë"} <= names


def test_excel_workbook_is_named_as_such(wh, tmp_path):
    path = tmp_path / "customers.xlsx.csv"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        zf.writestr("xl/workbook.xml", "<workbook/>")
    with pytest.raises(FileFormatError, match="Excel workbook; save the sheet as CSV"):
        ingest_file(wh, "customers", path, fmt="csv")


def test_detected_describes_each_decision(tmp_path):
    path = tmp_path / "o.csv"
    path.write_bytes(ORDERS_EU.encode("cp1252"))
    reader = open_reader(path, get_kind("orders"), fmt=None, mapping={}, chunk_rows=100)
    assert reader.detected.describe() == [
        "encoding: windows-1252",
        "delimiter: ';'",
        "header: first line",
        "dates in ts: DD/MM/YYYY",
        "decimal mark: comma (from 2 value(s))",
    ]
    assert reader.detected.columns == ["order_id", "customer_id", "ts", "amount"]

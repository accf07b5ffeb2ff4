"""CSV ingestion: good rows kept, bad rows quarantined with reasons, idempotent, mapped."""

from __future__ import annotations

import pandas as pd
import pytest

from segone.config import IngestSettings
from segone.exceptions import FileFormatError, MappingError
from segone.ingest import ingest_file
from tests.conftest import write

ORDERS = """\
OrderNumber,Customer ID,Order Date,SKU,Qty,Price,Channel,gift_wrap
A1,c1,2024-01-05T10:00:00+02:00,p1,2,10.00,web,yes
A1,c1,2024-01-05T10:00:00+02:00,p2,1,$5.50,web,no
A2,c2,2024-01-06,p1,-1,10,store,no
A3,c3,not a date,p3,1,3,web,no
A4,,2024-01-07,p1,1,10,web,no
A5,c5,2024-01-08,p4,1.5,10,web,no
A6,c6,2024-01-09,p4,1,10,web
A7,c7,2024-01-09 12:00,p5,3,2.5,app,no
A8,c8,2024-01-10,p5,2,4,web,no
A8,c8,2024-01-10,p6,x,4,web,no
"""


def test_good_rows_load_bad_rows_quarantined_with_reasons(wh, tmp_path):
    path = write(tmp_path / "orders.csv", ORDERS)
    r = ingest_file(wh, "orders", path)
    assert (r.loaded, r.lines_loaded, r.rejected, r.rows_read) == (2, 3, 7, 10)
    orders = wh.execute(wh.table("orders").order_by("order_id"))
    assert list(orders.order_id) == ["A1", "A7"]
    a1 = orders.iloc[0]
    assert a1.amount == pytest.approx(25.5)  # 2 x 10 + 5.50, the "$" is understood
    assert a1.ts == pd.Timestamp("2024-01-05T08:00:00Z")  # +02:00 normalised to UTC
    assert a1.extra == {"gift_wrap": "yes"}  # unknown columns are kept, not dropped
    q = wh.execute(wh.table("quarantine").order_by("line"))
    by_line = dict(zip(q.line, q.reason, strict=True))
    assert "quantity: '-1' is below the minimum 1" in by_line[4]
    assert "ts: cannot read 'not a date'" in by_line[5]
    assert "none of customer_id" in by_line[6]
    assert "quantity: '1.5' is not a whole number" in by_line[7]
    assert "expected 8 fields, found 7" in by_line[8]
    assert "quantity: 'x' is not a whole number" in by_line[11]
    # the valid line of an order with a bad line is held back too, not half-loaded
    assert "another line of the same order" in by_line[10]
    assert set(q.source_file) == {str(path)}
    assert all(q.record.str.len() > 0)
    assert r.problems["not_a_number(quantity)"] == 2


def test_second_ingest_adds_nothing(wh, tmp_path):
    path = write(tmp_path / "orders.csv", ORDERS)
    ingest_file(wh, "orders", path)
    before = {t: wh.count(t) for t in ("orders", "order_lines", "quarantine")}
    r = ingest_file(wh, "orders", path)
    assert r.loaded == 0 and r.lines_loaded == 0
    assert r.duplicates == 3  # the 3 lines of the 2 orders already there
    assert {t: wh.count(t) for t in before} == before
    assert wh.count("loads") == 2


def test_changed_order_is_quarantined_not_overwritten(wh, tmp_path):
    ingest_file(
        wh,
        "orders",
        write(tmp_path / "a.csv", "order_id,customer_id,ts,amount\nX1,c1,2024-01-01,10\n"),
    )
    r = ingest_file(
        wh,
        "orders",
        write(tmp_path / "b.csv", "order_id,customer_id,ts,amount\nX1,c1,2024-01-01,99\n"),
    )
    assert r.loaded == 0 and r.rejected == 1
    assert wh.execute(wh.table("orders").amount.sum()) == 10
    reason = wh.execute(wh.table("quarantine").reason)[0]
    assert "already loaded with different values or lines" in reason


def test_order_level_file_without_lines(wh, tmp_path):
    path = write(
        tmp_path / "o.csv",
        "order_id,email,ts,total,currency\nB1,a@x.com,2024-02-01,12.5,eur\nB2,b@x.com,2024-02-02,3,\n",
    )
    r = ingest_file(wh, "orders", path)
    assert r.loaded == 2 and r.lines_loaded == 0
    df = wh.execute(wh.table("orders").order_by("order_id"))
    assert list(df.currency) == ["EUR", "USD"]
    assert list(df.status) == ["completed", "completed"]


def test_explicit_mapping_and_timezone(wh, tmp_path):
    path = write(tmp_path / "shop.csv", "Ref;Buyer;When\nZ1;k9;2024-03-01 09:30:00\n")
    settings = IngestSettings(timezone="America/New_York")
    r = ingest_file(
        wh,
        "orders",
        path,
        settings=settings,
        mapping={"order_id": "Ref", "customer_id": "Buyer", "ts": "When"},
    )
    assert r.loaded == 1
    ts = wh.execute(wh.table("orders").ts)[0]
    assert ts == pd.Timestamp("2024-03-01T14:30:00Z")  # EST is UTC-5


def test_source_specific_mapping_from_settings(wh, tmp_path):
    path = write(tmp_path / "loyalty.csv", "card_number,name,phone\nL1,Jane Doe,555\n")
    settings = IngestSettings(
        mapping={"loyalty": {"source_id": "card_number", "loyalty_id": "card_number"}}
    )
    r = ingest_file(wh, "customers", path, settings=settings)
    assert r.loaded == 1
    row = wh.execute(wh.table("customers")).iloc[0]
    assert (row.source, row.source_id, row.full_name, row.loyalty_id) == (
        "loyalty",
        "L1",
        "Jane Doe",
        "L1",
    )


def test_missing_required_column_is_a_clear_file_error(wh, tmp_path):
    path = write(tmp_path / "c.csv", "name,phone\nJane,555\n")
    with pytest.raises(MappingError, match=r"no column for required field.*source_id.*--map"):
        ingest_file(wh, "customers", path)
    assert wh.count("customers") == 0 and wh.count("loads") == 0


def test_ambiguous_columns_ask_for_a_mapping(wh, tmp_path):
    path = write(tmp_path / "c.csv", "id,id,name\n1,2,x\n")
    with pytest.raises(FileFormatError, match="duplicate column"):
        ingest_file(wh, "customers", path)
    path = write(tmp_path / "c2.csv", "id,ID,name\n1,2,x\n")
    with pytest.raises(MappingError, match="could all be 'source_id'"):
        ingest_file(wh, "customers", path)
    path = write(tmp_path / "d.csv", "Order-ID,order id,ts,customer\n1,2,2024-01-01,c\n")
    with pytest.raises(MappingError, match="could all be 'order_id'"):
        ingest_file(wh, "orders", path)


def test_customers_versions_and_types(wh, tmp_path):
    v1 = (
        "id,email,dob,email_optin,created\n"
        "1,a@x.com,1980-02-03,yes,2024-01-01\n"
        "2,b@x.com,1990-13-01,no,2024-01-01\n"
    )
    strict = IngestSettings(strict=True)  # the whole row rejected, as before field-level drops
    r = ingest_file(wh, "customers", write(tmp_path / "crm.csv", v1), source="crm", settings=strict)
    assert (r.loaded, r.rejected) == (1, 1)
    row = wh.execute(wh.table("customers")).iloc[0]
    assert row.consent_email is True or row.consent_email == True  # noqa: E712
    assert str(row.birth_date)[:10] == "1980-02-03"
    # same record again: nothing; changed record: a new version; back to the old: a new version
    ingest_file(
        wh,
        "customers",
        write(tmp_path / "crm.csv", v1),
        source="crm",
        settings=strict,
    )
    assert wh.count("customers") == 1
    v2 = v1.replace("a@x.com", "a.new@x.com")
    ingest_file(
        wh,
        "customers",
        write(tmp_path / "crm2.csv", v2),
        source="crm",
        settings=strict,
    )
    assert wh.count("customers") == 2
    ingest_file(
        wh,
        "customers",
        write(tmp_path / "crm3.csv", v1),
        source="crm",
        settings=strict,
    )
    assert wh.count("customers") == 3


def test_a_bad_optional_field_is_dropped_and_recorded_while_its_row_loads(wh, tmp_path):
    text = (
        "id,email,dob,email_optin,created,status\n"
        "1,a@x.com,1980-02-03,yes,2024-01-01,\n"
        "2,b@x.com,1990-13-01,maybe,2024-01-01,\n"
        ",c@x.com,1990-01-01,no,2024-01-01,\n"
    )
    r = ingest_file(wh, "customers", write(tmp_path / "crm.csv", text), source="crm")
    # the bad birth date and the bad consent are dropped; the row without an id is rejected
    assert (r.loaded, r.rejected, r.fields_dropped) == (2, 1, 1)
    rows = wh.execute(wh.table("customers").order_by("source_id"))
    b = rows[rows.source_id == "2"].iloc[0]
    assert b.email == "b@x.com" and str(b.birth_date) in ("NaT", "None")
    assert b.consent_email is None or str(b.consent_email) in ("nan", "<NA>", "None")
    q = wh.execute(wh.table("quarantine").order_by("line"))
    dropped = q[q.problems.str.startswith("dropped_field")].iloc[0]
    assert dropped.line == 3
    assert "invalid_date(birth_date)" in dropped.problems
    assert "not_a_boolean(consent_email)" in dropped.problems
    assert "1990-13-01" in dropped.reason and "row kept" in dropped.reason
    assert "1990-13-01" in dropped.record  # the record as read, not as loaded
    assert "missing(source_id)" in q[q.line == 4].iloc[0].problems
    # loading the same file again records nothing twice
    again = ingest_file(wh, "customers", write(tmp_path / "crm.csv", text), source="crm")
    assert again.loaded == 0 and wh.count("quarantine") == 2


def test_oversize_field_is_rejected(wh, tmp_path):
    big = "x" * 300
    path = write(tmp_path / "p.csv", f"product_id,name,price\nP1,{big},3\nP2,ok,4\n")
    r = ingest_file(wh, "products", path, settings=IngestSettings(max_field_chars=100))
    assert (r.loaded, r.rejected) == (1, 1)
    assert (
        "name: 300 characters, over the limit of 100"
        in wh.execute(wh.table("quarantine").reason)[0]
    )


def test_quoted_newlines_keep_line_numbers_honest(wh, tmp_path):
    text = (
        "interaction_id,kind,author_handle,text,ts,stars\n"
        'i1,review,@a,"multi\nline text",2024-01-01,5\n'
        "i2,review,@b,fine,2024-01-02,9\n"
    )
    r = ingest_file(wh, "interactions", write(tmp_path / "i.csv", text))
    # a rating out of range is dropped (the review loads without it) and recorded
    assert (r.loaded, r.rejected, r.fields_dropped) == (2, 0, 1)
    assert wh.execute(wh.table("interactions").order_by("ts").text)[0] == "multi\nline text"
    q = wh.execute(wh.table("quarantine"))
    assert q.line[0] == 3 and "rating: '9' is above the maximum 5" in q.reason[0]


def test_empty_and_headerless_files(wh, tmp_path):
    with pytest.raises(FileFormatError, match="empty"):
        ingest_file(wh, "products", write(tmp_path / "e.csv", ""))
    r = ingest_file(wh, "products", write(tmp_path / "h.csv", "product_id,name\n"))
    assert r.rows_read == 0 and r.loaded == 0


def test_a_new_line_on_a_loaded_order_is_quarantined_not_dropped(wh, tmp_path):
    ingest_file(
        wh,
        "orders",
        write(
            tmp_path / "a.csv",
            "order_id,email,ts,product_id,quantity,unit_price,amount\n"
            "A,a@x.com,2024-01-01,p1,1,5,15\nA,a@x.com,2024-01-01,p2,1,10,15\n",
        ),
    )
    r = ingest_file(
        wh,
        "orders",
        write(
            tmp_path / "b.csv",
            "order_id,email,ts,product_id,quantity,unit_price,amount\n"
            "A,a@x.com,2024-01-01,p1,1,5,15\nA,a@x.com,2024-01-01,p2,1,10,15\n"
            "A,a@x.com,2024-01-01,p3,1,1,15\n",
        ),
    )
    assert r.loaded == 0 and r.rejected == 3 and wh.count("order_lines") == 2


def test_two_versions_in_one_file_reload_idempotently(wh, tmp_path):
    path = write(tmp_path / "crm.csv", "id,email,first_name\n1,a@x.com,Ann\n1,a@x.com,Anne\n")
    first = ingest_file(wh, "customers", path, source="crm")
    assert first.loaded == 1 and first.duplicates == 1  # the file's last word on record 1
    for _ in range(2):
        assert ingest_file(wh, "customers", path, source="crm").loaded == 0
    assert wh.execute(wh.table("customers").first_name).tolist() == ["Anne"]


def test_same_file_other_timezone_setting_is_still_idempotent(wh, tmp_path):
    path = write(tmp_path / "o.csv", "order_id,email,ts\nZ,a@x.com,2024-01-01T10:00:00Z\n")
    ingest_file(wh, "orders", path)
    r = ingest_file(wh, "orders", path, timezone="Europe/Paris")
    assert r.loaded == 0 and r.rejected == 0 and r.duplicates == 1


def test_rewritten_file_quarantines_its_new_bad_rows(wh, tmp_path):
    path = write(tmp_path / "e.csv", "order_id,email,ts\nQ1,a@x.com,notatime\n")
    ingest_file(wh, "orders", path)
    write(tmp_path / "e.csv", "order_id,email,ts\nQ2,b@x.com,alsobad\n")
    ingest_file(wh, "orders", path)
    assert wh.count("quarantine") == 2

"""Segment-spec JSON, JSON Lines, gzip and Parquet ingestion."""

from __future__ import annotations

import gzip
import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from segone.ingest import ingest_file
from tests.conftest import jsonl

GOOD = [
    {
        "type": "identify",
        "userId": "u1",
        "anonymousId": "a1",
        "traits": {"email": "Jane@X.com"},
        "timestamp": "2024-01-01T00:00:00Z",
        "messageId": "m1",
    },
    {
        "type": "track",
        "userId": "u1",
        "event": "Order Completed",
        "properties": {"revenue": 10},
        "timestamp": "2024-01-01T00:01:00+01:00",
        "messageId": "m2",
        "integrations": {"All": True},
    },
    {
        "type": "identify",
        "userId": 42,
        "context": {"traits": {"email": "b@y.com"}},
        "timestamp": 1704153600,
        "messageId": "m3",
    },
    {
        "type": "page",
        "anonymousId": "a9",
        "name": "Pricing",
        "properties": {"path": "/pricing"},
        "timestamp": "2024-01-02T00:00:00Z",
    },
    {
        "type": "alias",
        "userId": "u1",
        "previousId": "a1",
        "timestamp": "2024-01-02T00:00:00Z",
        "messageId": "m5",
    },
]
BAD = [
    {"type": "track", "userId": "u1", "timestamp": "2024-01-01T00:01:00Z", "messageId": "b1"},
    "not json at all",
    {
        "type": "page",
        "anonymousId": "a1",
        "properties": {},
        "timestamp": "yesterday",
        "messageId": "b3",
    },
    {
        "type": "page",
        "anonymousId": "a1",
        "properties": "oops",
        "timestamp": "2024-01-02T00:00:00Z",
    },
    {"type": "bogus", "anonymousId": "a1", "timestamp": "2024-01-02T00:00:00Z", "messageId": "b5"},
    {"type": "track", "event": "X", "timestamp": "2024-01-02T00:00:00Z", "messageId": "b6"},
    "[1, 2]",
    {"type": "alias", "userId": "u1", "timestamp": "2024-01-02T00:00:00Z", "messageId": "b8"},
    {
        "type": "track",
        "event": "Big",
        "userId": "u1",
        "timestamp": "2024-01-02T00:00:00Z",
        "messageId": "b9",
        "properties": {"blob": "x" * 40_000},
    },
]
EXPECTED_CODES = {
    "missing(event)",
    "malformed_json",
    "invalid_timestamp(timestamp)",
    "not_a_json_object(properties)",
    "invalid_choice(type)",
    "missing_identity(user_id|anonymous_id)",
    "not_an_object",
    "missing(previous_id)",
    "message_too_large",
}


def test_segment_jsonl(wh, tmp_path):
    path = jsonl(tmp_path / "ev.jsonl", GOOD + BAD + [GOOD[0]])  # a retried message at the end
    r = ingest_file(wh, "events", path)
    assert (r.loaded, r.rejected, r.duplicates) == (5, 9, 1)
    assert set(r.problems) == EXPECTED_CODES
    ev = wh.execute(wh.table("events").order_by("timestamp"))
    m2 = ev[ev.message_id == "m2"].iloc[0]
    assert m2.timestamp == pd.Timestamp("2023-12-31T23:01:00Z")
    assert m2.properties == {"revenue": 10} and m2.extra == {"integrations": {"All": True}}
    m3 = ev[ev.message_id == "m3"].iloc[0]
    assert m3.user_id == "42" and m3.traits == {"email": "b@y.com"}  # traits from context.traits
    assert m3.timestamp == pd.Timestamp("2024-01-02T00:00:00Z")  # epoch seconds
    derived = ev[ev.message_id.str.startswith("h-")]
    assert len(derived) == 1  # the page without a messageId got a stable derived id
    q = wh.execute(wh.table("quarantine"))
    assert set(q.line) == set(range(6, 15))
    assert q[q.problems == "malformed_json"].record.iloc[0] == "not json at all"
    # idempotent, including the derived id and the quarantine
    r2 = ingest_file(wh, "events", path)
    assert r2.loaded == 0 and wh.count("events") == 5 and wh.count("quarantine") == 9


def test_segment_batch_document_and_single_message(wh, tmp_path):
    batch = tmp_path / "batch.json"
    batch.write_text(json.dumps({"batch": GOOD, "sentAt": "2024-01-03T00:00:00Z", "writeKey": "k"}))
    r = ingest_file(wh, "events", batch)
    assert r.loaded == 5
    single = tmp_path / "one.json"
    single.write_text(json.dumps({**GOOD[0], "messageId": "solo"}))
    assert ingest_file(wh, "events", single).loaded == 1
    assert wh.count("events") == 6


def test_gzip_jsonl(wh, tmp_path):
    path = tmp_path / "ev.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.write("\n".join(json.dumps(m) for m in GOOD) + "\n\n")
    assert ingest_file(wh, "events", path).loaded == 5


def test_flat_jsonl_customers_with_nested_extra(wh, tmp_path):
    rows = [
        {"id": "c1", "e-mail": "a@x.com", "first name": "Ann", "prefs": {"color": "red"}},
        {"id": "c2", "e-mail": "b@x.com", "newsletter": "maybe"},
    ]
    r = ingest_file(wh, "customers", jsonl(tmp_path / "crm.jsonl", rows))
    # the unreadable consent is dropped and recorded; the record loads without it
    assert (r.loaded, r.rejected, r.fields_dropped) == (2, 0, 1)
    row = wh.execute(wh.table("customers").order_by("source_id")).iloc[0]
    assert (row.source_id, row.email, row.first_name) == ("c1", "a@x.com", "Ann")
    assert row.extra["prefs"] == {"color": "red"}
    assert (
        "consent_email: 'maybe' is not true/false" in wh.execute(wh.table("quarantine").reason)[0]
    )


def test_parquet_typed_columns(wh, tmp_path):
    t = pa.table(
        {
            "product_id": ["P1", "P2", None],
            "price": pa.array([9.5, -1.0, 3.0]),
            "launched": pa.array([pd.Timestamp("2024-01-01")] * 3),
            "tags": pa.array([["a"], [], ["b"]]),
        }
    )
    pq.write_table(t, tmp_path / "p.parquet")
    r = ingest_file(wh, "products", tmp_path / "p.parquet")
    # the negative price is dropped (P2 loads without one); the row without an id is rejected
    assert (r.loaded, r.rejected, r.fields_dropped) == (2, 1, 1)
    row = wh.execute(wh.table("products").order_by("product_id")).iloc[0]
    assert row.price == 9.5 and row.extra["tags"] == ["a"]
    reasons = " | ".join(wh.execute(wh.table("quarantine").reason))
    assert "price: '-1.0' is below the minimum 0" in reasons and "product_id: missing" in reasons


def test_message_size_limit_counts_bytes(wh, tmp_path):
    big = {
        "type": "track",
        "event": "E",
        "userId": "u",
        "timestamp": "2024-01-01T00:00:00Z",
        "messageId": "big",
        "properties": {"text": "€" * 12_000},
    }  # 12k characters, 36 KB
    r = ingest_file(wh, "events", jsonl(tmp_path / "e.jsonl", [big]))
    assert r.rejected == 1 and r.problems == {"message_too_large": 1}


def test_held_back_order_lines_keep_a_record_across_slices(wh, tmp_path):
    from segone.config import IngestSettings

    rows = [
        {
            "order_id": "X",
            "email": "a@x.com",
            "ts": "2024-01-01",
            "product_id": f"p{i}",
            "quantity": 1,
            "unit_price": 2,
        }
        for i in range(3)
    ]
    rows[2]["quantity"] = -1  # the bad line lands in a later slice than its siblings
    ingest_file(
        wh, "orders", jsonl(tmp_path / "o.jsonl", rows), settings=IngestSettings(chunk_rows=1)
    )
    q = wh.execute(wh.table("quarantine"))
    assert len(q) == 3 and q.record.notna().all()


def test_json_lines_under_a_json_name(wh, tmp_path):
    path = tmp_path / "export.json"
    path.write_text("\n".join(json.dumps(m) for m in GOOD) + "\n{broken\n")
    r = ingest_file(wh, "events", path)
    assert (r.loaded, r.rejected, r.problems) == (5, 1, {"malformed_json": 1})

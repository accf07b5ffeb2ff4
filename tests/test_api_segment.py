"""Segment request parsing (pure functions): normalized messages, limits, gzip."""

from __future__ import annotations

import gzip
import json
import zlib
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from segone.api.errors import ApiError
from segone.api.segment import Limits, Parsed, decompress, parse_request

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def parse(doc: object, endpoint: str = "batch") -> Parsed:
    return parse_request(json.dumps(doc).encode(), {}, endpoint, Limits(), NOW)


def test_identify_normalized() -> None:
    p = parse(
        {
            "userId": 42,
            "anonymousId": "  ",
            "writeKey": "wk",
            "traits": {"plan": "gold", "email": "top@example.com"},
            "context": {"traits": {"email": "ctx@example.com", "city": "Lyon"}, "ip": "1.2.3.4"},
            "timestamp": "2026-02-01T10:00:00+02:00",
            "integrations": {"All": True},
        },
        "identify",
    )
    assert p.write_key == "wk"
    (m,) = p.messages
    assert m["type"] == "identify" and m["userId"] == "42" and "anonymousId" not in m
    assert m["traits"] == {"plan": "gold", "email": "top@example.com", "city": "Lyon"}
    assert m["properties"] == {} and m["context"]["ip"] == "1.2.3.4"
    assert m["timestamp"] == "2026-02-01T10:00:00+02:00"
    assert m["receivedAt"] == NOW.isoformat()
    assert "writeKey" not in m and m["integrations"] == {"All": True}
    assert len(m["messageId"]) == 36  # generated uuid4


def test_batch_defaults_and_shared_context() -> None:
    p = parse(
        {
            "batch": [
                {"type": "TRACK", "anonymousId": "a", "event": "E", "messageId": "m1"},
                {"type": "page", "userId": "u", "context": {"page": {"path": "/x"}}},
                {"type": "alias", "previousId": "a", "userId": "u", "timestamp": "2026-01-01"},
            ],
            "context": {"library": {"name": "x"}, "page": {"path": "/shared"}},
        }
    )
    a, b, c = p.messages
    assert a["type"] == "track" and a["messageId"] == "m1" and a["timestamp"] == NOW.isoformat()
    assert a["context"]["page"] == {"path": "/shared"} and b["context"]["page"] == {"path": "/x"}
    assert b["context"]["library"] == {"name": "x"}
    assert c["previousId"] == "a" and c["timestamp"] == "2026-01-01T00:00:00+00:00"


@pytest.mark.parametrize(
    ("msg", "code", "field"),
    [
        ({"type": "track", "userId": "u"}, "missing_field", "event"),
        ({"type": "track", "userId": ["u"], "event": "E"}, "invalid_field", "userId"),
        ({"type": "track", "userId": True, "event": "E"}, "invalid_field", "userId"),
        ({"type": "identify", "userId": "u", "traits": "x"}, "invalid_field", "traits"),
        ({"type": "page", "userId": "u", "properties": [1]}, "invalid_field", "properties"),
        ({"type": "page", "userId": "u", "name": 3}, "invalid_field", "name"),
        ({"type": "group", "userId": "u"}, "missing_field", "groupId"),
        ({"type": "alias", "previousId": "a"}, "missing_field", "userId"),
        ({"type": "alias", "userId": "u", "anonymousId": "a"}, "missing_field", "previousId"),
        ({"type": "screen", "userId": "u", "timestamp": 17}, "invalid_field", "timestamp"),
        (
            {"type": "screen", "userId": "u", "timestamp": "2026-13-01"},
            "invalid_timestamp",
            "timestamp",
        ),
        ({"type": "spam", "userId": "u"}, "invalid_type", "type"),
        ({"userId": "u"}, "missing_field", "type"),
        (
            {"type": "track", "userId": "u", "event": "E", "messageId": {}},
            "invalid_field",
            "messageId",
        ),
        ("a string", "not_an_object", None),
    ],
)
def test_invalid_message_rejected_by_index(msg: object, code: str, field: str | None) -> None:
    ok = {"type": "track", "userId": "u", "event": "E"}
    p = parse({"batch": [ok, msg]})
    (r,) = p.rejected
    assert (r.index, r.code, r.field) == (1, code, field)
    assert r.message.startswith("message 1: ")


def test_message_limit_is_on_compact_json_and_batch_limit_on_the_body() -> None:
    limits = Limits(max_message_bytes=200, max_batch_bytes=1000)
    msg = {"type": "track", "userId": "u", "event": "E", "properties": {"p": "x" * 120}}
    fits = parse_request(
        orjson.dumps({"batch": [msg]}, option=orjson.OPT_INDENT_2), {}, "batch", limits
    )
    assert len(fits.messages) == 1
    msg["properties"] = {"p": "x" * 200}
    p = parse_request(
        orjson.dumps({"batch": [msg, {**msg, "properties": {}}]}), {}, "batch", limits
    )
    assert [r.code for r in p.rejected] == ["message_too_large"]
    with pytest.raises(ApiError) as e:
        parse_request(
            orjson.dumps({"batch": [{**msg, "properties": {}}] * 20}), {}, "batch", limits
        )
    assert e.value.status == 413


def test_gzip_deflate_and_multi_member() -> None:
    body = orjson.dumps({"batch": [{"type": "track", "userId": "u", "event": "E"}]})
    assert decompress(gzip.compress(body), "gzip", 10_000) == body
    assert decompress(zlib.compress(body), "deflate", 10_000) == body
    half = len(body) // 2
    two = gzip.compress(body[:half]) + gzip.compress(body[half:])
    assert decompress(two, "gzip", 10_000) == body
    with pytest.raises(ApiError) as e:
        decompress(gzip.compress(b" " * 20_000), "gzip", 10_000)
    assert e.value.status == 413
    with pytest.raises(ApiError) as e:
        decompress(gzip.compress(body) + b"junk", "gzip", 10_000)
    assert (e.value.status, e.value.code) == (400, "invalid_encoding")


def test_spec_fields_of_the_wrong_type_are_dropped_and_named() -> None:
    p = parse(
        {
            "batch": [
                {"type": "track", "userId": "u", "event": "E", "properties": {"total": "NaN"}},
                {"type": "track", "userId": ["bad"], "event": "E"},
                {
                    "type": "track",
                    "userId": "u",
                    "event": "Order Completed",
                    "properties": {
                        "order_id": {"id": 1},
                        "revenue": "12.50",
                        "total": 1e300,
                        "tax": True,
                        "shipping": "1_000",
                        "currency": ["USD"],
                        "custom": {"kept": "as sent"},
                        "products": [{"price": "inf", "quantity": -1, "sku": 7}, 3],
                    },
                },
                {
                    "type": "identify",
                    "userId": "u",
                    "traits": {"email": {}, "address": {"city": ["x"], "street": "1 Rd"}},
                    "context": {"traits": {"birthday": "not a date", "age": 41}},
                },
                {
                    "type": "page",
                    "userId": "u",
                    "properties": {"path": {}, "keywords": "x"},
                    "sentAt": "yesterday",
                },
            ]
        }
    )
    # a custom event's own "total" is not a spec field, but "revenue"/"value" are everywhere
    custom, order, ident, page = p.messages
    assert custom["properties"] == {"total": "NaN"} and "_dropped" not in custom
    props = order["properties"]
    assert props == {
        "revenue": "12.50",
        "custom": {"kept": "as sent"},
        "products": [{"sku": 7}],
    }
    assert order["_dropped"]["properties.total"] == {
        "reason": "is out of range (-9.0072e+15 to 9.0072e+15); dropped",
        "sent": "1e+300",
    }
    assert ident["traits"] == {"address": {"street": "1 Rd"}, "age": 41}
    assert ident["context"]["traits"] == {"age": 41}
    assert page["properties"] == {} and "sentAt" not in page
    dropped = {(d["index"], d["field"]) for d in p.dropped()}
    assert dropped == {
        (2, "properties.order_id"),
        (2, "properties.total"),
        (2, "properties.tax"),
        (2, "properties.shipping"),
        (2, "properties.currency"),
        (2, "properties.products[0].price"),
        (2, "properties.products[0].quantity"),
        (2, "properties.products[1]"),
        (3, "traits.email"),
        (3, "traits.address.city"),
        (3, "traits.birthday"),
        (3, "context.traits.birthday"),
        (4, "properties.path"),
        (4, "properties.keywords"),
        (4, "sentAt"),
    }
    assert all(d["code"] == "dropped_field" for d in p.dropped())
    assert [r.index for r in p.rejected] == [1]


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("2000-01-01T00:00:00Z", True),
        ("1999-12-31T23:59:59Z", False),
        ("2026-03-02T11:59:59+00:00", True),  # NOW + 1 day, less a second
        ("2026-03-02T12:00:01+00:00", False),
        ("9999-12-31T23:59:59.999999+00:00", False),
        ("0001-01-01T00:00:00+14:00", False),  # before the calendar in UTC
    ],
)
def test_event_times_outside_the_window_become_the_time_received(sent: str, kept: bool) -> None:
    for key in ("timestamp", "originalTimestamp"):
        (m,) = parse({"userId": "u", "event": "E", key: sent}, "track").messages
        if kept:
            assert m["timestamp"] == datetime.fromisoformat(sent).isoformat()
            assert "_dropped" not in m
        else:
            assert m["timestamp"] == m["receivedAt"] == NOW.isoformat()
            assert m["originalTimestamp"] == sent
            assert m["_dropped"][key]["sent"] == orjson.dumps(sent).decode()


def test_the_window_is_configurable() -> None:
    limits = Limits(
        earliest_timestamp=datetime(1970, 1, 1, tzinfo=UTC),
        timestamp_future=timedelta(days=3650),
    )
    for sent in ("1970-01-01T00:00:00Z", "2035-01-01T00:00:00Z"):
        body = json.dumps({"userId": "u", "event": "E", "timestamp": sent}).encode()
        (m,) = parse_request(body, {}, "track", limits, NOW).messages
        assert m["timestamp"] == datetime.fromisoformat(sent).isoformat()
    p = parse(
        {"batch": [{"type": "alias", "userId": "u", "previousId": "a", "timestamp": "1900-01-01"}]}
    )
    [d] = p.dropped()
    assert (d["code"], d["field"], d["index"]) == ("timestamp_replaced", "timestamp", 0)
    assert "2000-01-01 to 1 day after receipt" in d["message"]

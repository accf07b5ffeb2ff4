"""Segment request parsing (pure functions): normalized messages, limits, gzip."""

from __future__ import annotations

import gzip
import json
import zlib
from datetime import UTC, datetime

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

"""Segment tracking API requests -> normalized messages (pure functions, no I/O).

A request body (maybe gzip-compressed) is decompressed with a hard cap, parsed, and each message
validated and normalized into the shape the engine takes (see ``normalize``). Whole-request
problems raise ``ApiError`` (400 malformed, 413 too large, 415 unknown encoding); problems of one
message of a batch are returned as ``Rejection``s so the rest of the batch is still accepted.

Sizes follow Segment: at most ``max_message_bytes`` per message (measured on its compact JSON)
and ``max_batch_bytes`` per request (measured on the decompressed body).

Values are typed at the door (``segone.live.spec``): a spec field of the wrong type (``"total":
"NaN"``, a price of 1e300, ``"revenue": {}``) is dropped from the stored message, its value kept
beside it under ``_dropped`` and the client told in ``dropped``. A timestamp outside the
accepted window (``[server] earliest_timestamp`` to ``timestamp_future_days`` after receipt)
is replaced by the time received, the original kept as ``originalTimestamp``, as Segment does
with a device clock it cannot trust.
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from segone.api.errors import ApiError, detail
from segone.ingest.segment import MAX_MESSAGE_BYTES
from segone.live.spec import DROPPED_KEY, in_window, typed

TYPES = ("identify", "track", "page", "screen", "group", "alias")
MAX_BATCH_BYTES = 500 * 1024
# gzip of JSON is smaller than the JSON; the slack covers incompressible bodies' gzip overhead
COMPRESSED_SLACK = 64 * 1024
# keys that never reach the store: the credential, and what normalize rewrites
_DROP = ("writeKey", "write_key", DROPPED_KEY)
EARLIEST_TIMESTAMP = datetime(2000, 1, 1, tzinfo=UTC)
_TIMES = ("timestamp", "originalTimestamp")


@dataclass(frozen=True)
class Limits:
    """What the door accepts: sizes, and the window of event times taken as sent."""

    max_message_bytes: int = MAX_MESSAGE_BYTES
    max_batch_bytes: int = MAX_BATCH_BYTES
    earliest_timestamp: datetime = EARLIEST_TIMESTAMP
    timestamp_future: timedelta = timedelta(days=1)

    @property
    def max_body_bytes(self) -> int:
        """Cap on the body as sent (compressed or not), checked before decompressing."""
        return self.max_batch_bytes + COMPRESSED_SLACK


@dataclass(frozen=True)
class Rejection:
    """One message of a batch that was not accepted, with the reason and the message as sent."""

    index: int
    code: str
    message: str
    field: str | None
    raw: Any

    def as_detail(self) -> dict[str, Any]:
        return detail(self.code, self.message, self.index, self.field)


@dataclass
class Parsed:
    """A parsed request: the valid messages, the rejected ones, and ``writeKey`` if in the body."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    write_key: str | None = None
    # index in the request of an accepted message, where it differs from its place in messages
    indexes: dict[int, int] = field(default_factory=dict)

    def dropped(self) -> list[dict[str, Any]]:
        """The fields dropped from the accepted messages (by message index in the request and
        field; never the values), as ``details`` entries."""
        out = []
        for i, m in enumerate(self.messages):
            for name, d in (m.get(DROPPED_KEY) or {}).items():
                at = self.indexes.get(i, i)
                code = "timestamp_replaced" if name in _TIMES else "dropped_field"
                out.append(detail(code, f"message {at}: {name} {d['reason']}", at, name))
        return out


def too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        f"the request body is larger than {limit} bytes (Segment's batch limit)",
        "payload_too_large",
    )


def decompress(body: bytes, content_encoding: str | None, limit: int) -> bytes:
    """The body as JSON bytes: gzip/deflate undone in a stream that stops past ``limit`` bytes
    (so a compression bomb costs at most ``limit`` bytes of memory)."""
    enc = (content_encoding or "").strip().lower()
    if enc in ("", "identity"):
        if len(body) > limit:
            raise too_large(limit)
        return body
    if enc in ("gzip", "x-gzip"):
        wbits = 16 + zlib.MAX_WBITS
    elif enc == "deflate":
        wbits = zlib.MAX_WBITS
    else:
        raise ApiError(
            415,
            "Content-Encoding must be gzip, deflate or identity",
            "unsupported_content_encoding",
        )
    parts: list[bytes] = []
    total = 0
    data = body
    try:
        while True:  # a gzip stream may hold several members, one after the other
            d = zlib.decompressobj(wbits)
            out = d.decompress(data, limit + 1 - total)
            total += len(out)
            if total > limit:
                raise too_large(limit)
            parts.append(out)
            if not d.eof:
                raise ApiError(400, f"the {enc} body is truncated", "invalid_encoding")
            data = d.unused_data
            if not data:
                break
    except zlib.error:
        raise ApiError(400, f"the body is not valid {enc} data", "invalid_encoding") from None
    return b"".join(parts)


def parse_json(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ApiError(
            400,
            f"the body is not valid JSON (line {exc.lineno}, column {exc.colno})",
            "malformed_json",
        ) from None


def decode(body: bytes, headers: Mapping[str, str], limits: Limits) -> Any:
    """Decompress (per ``Content-Encoding``) and parse a request body."""
    if len(body) > limits.max_body_bytes:
        raise too_large(limits.max_batch_bytes)
    return parse_json(decompress(body, headers.get("content-encoding"), limits.max_batch_bytes))


class _Invalid(Exception):
    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.field = code, message, field


def _id(msg: dict[str, Any], key: str) -> str | None:
    """An identifier field: a non-empty string (numbers are accepted and written as text)."""
    v = msg.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, str | int):
        raise _Invalid("invalid_field", f"{key} must be a string", key)
    s = str(v).strip()
    return s or None


def _obj(msg: Mapping[str, Any], key: str, where: str = "") -> dict[str, Any]:
    v = msg.get(key)
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise _Invalid("invalid_field", f"{where}{key} must be an object", where + key)
    return v


def parse_timestamp(value: Any, key: str = "timestamp") -> datetime | None:
    """An aware time from ISO-8601 text (a value without an offset is taken as UTC); None for
    a readable one that is no instant of the calendar (``0001-01-01T00:00:00+14:00``)."""
    if not isinstance(value, str):
        raise _Invalid("invalid_field", f"{key} must be an ISO-8601 string", key)
    try:
        dt = datetime.fromisoformat(value.strip())
    except ValueError:
        raise _Invalid("invalid_timestamp", f"{key} is not an ISO-8601 timestamp", key) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        dt.astimezone(UTC)  # out-of-range instants fail here, not later in the store
    except OverflowError:
        return None
    return dt


def _event_time(
    msg: dict[str, Any], out: dict[str, Any], received_at: str, now: datetime, limits: Limits
) -> None:
    """``out["timestamp"]``: the message's time when it is within the window, else the time
    received (the original kept as ``originalTimestamp`` and under ``_dropped``)."""
    key = "timestamp" if msg.get("timestamp") is not None else "originalTimestamp"
    raw = msg.get(key)
    if raw is None:
        out["timestamp"] = received_at
        return
    dt = parse_timestamp(raw, key)
    if dt is not None and in_window(dt, now, limits.earliest_timestamp, limits.timestamp_future):
        out["timestamp"] = dt.isoformat()
        return
    out["timestamp"] = received_at
    out.setdefault("originalTimestamp", raw)
    reason = (
        f"is outside the accepted window ({limits.earliest_timestamp.date().isoformat()} to "
        f"{_days(limits.timestamp_future)} after receipt); the time received is used"
    )
    out.setdefault(DROPPED_KEY, {})[key] = {"reason": reason, "sent": orjson.dumps(raw).decode()}


def _days(d: timedelta) -> str:
    n = d.total_seconds() / 86_400
    return f"{n:g} day" + ("" if n == 1 else "s")


def normalize(
    msg: Any,
    received_at: str,
    expected_type: str | None = None,
    limits: Limits = Limits(),
    batch_context: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """One validated message in the engine's shape; raises ``_Invalid`` (see ``validate``).
    Fields of the wrong spec type are dropped (``segone.live.spec``), listed under
    ``_dropped`` with why and the value as sent."""
    if not isinstance(msg, dict):
        raise _Invalid("not_an_object", "the message must be a JSON object")
    try:
        size = len(orjson.dumps(msg))
    except orjson.JSONEncodeError:  # orjson reads 1,024 levels deep but writes fewer than 255
        raise _Invalid(
            "too_deep", "the message is nested too deeply (254 levels at most)"
        ) from None
    if size > limits.max_message_bytes:
        raise _Invalid(
            "message_too_large",
            f"the message is {size} bytes; the limit is {limits.max_message_bytes}",
        )
    raw_type = msg.get("type")
    if raw_type is None and expected_type is not None:
        kind = expected_type
    elif isinstance(raw_type, str) and raw_type.strip().lower() in TYPES:
        kind = raw_type.strip().lower()
    elif raw_type is None:
        raise _Invalid("missing_field", "type is required", "type")
    else:
        raise _Invalid("invalid_type", f"type must be one of {', '.join(TYPES)}", "type")
    if expected_type is not None and kind != expected_type:
        raise _Invalid(
            "type_mismatch", f"type is {kind} but this endpoint takes {expected_type}", "type"
        )

    out = {k: v for k, v in msg.items() if k not in _DROP}
    out["type"] = kind
    user_id, anonymous_id = _id(msg, "userId"), _id(msg, "anonymousId")
    for key, val in (("userId", user_id), ("anonymousId", anonymous_id)):
        if val is None:
            out.pop(key, None)
        else:
            out[key] = val
    if kind == "alias":
        previous_id = _id(msg, "previousId")
        if previous_id is None or user_id is None:
            raise _Invalid(
                "missing_field",
                "alias needs previousId and userId",
                "userId" if previous_id else "previousId",
            )
        out["previousId"] = previous_id
    elif user_id is None and anonymous_id is None:
        raise _Invalid("missing_field", "userId or anonymousId is required", "userId")
    if kind == "track":
        event = msg.get("event")
        if not isinstance(event, str) or not event.strip():
            raise _Invalid("missing_field", "track needs event, a non-empty string", "event")
    name = msg.get("name")
    if kind in ("page", "screen") and name is not None and not isinstance(name, str):
        raise _Invalid("invalid_field", "name must be a string", "name")
    if kind == "group":
        group_id = _id(msg, "groupId")
        if group_id is None:
            raise _Invalid("missing_field", "group needs groupId", "groupId")
        out["groupId"] = group_id

    context = _obj(msg, "context")
    if batch_context:
        context = {**batch_context, **context}
    ctx_traits = _obj(context, "traits", "context.")
    traits = _obj(msg, "traits")
    out["context"] = context
    out["traits"] = {**ctx_traits, **traits} if ctx_traits else traits
    out["properties"] = _obj(msg, "properties")

    mid = msg.get("messageId")
    if mid is None or (isinstance(mid, str) and not mid.strip()):
        out["messageId"] = str(uuid.uuid4())
    elif isinstance(mid, str | int) and not isinstance(mid, bool):
        out["messageId"] = str(mid).strip()
    else:
        raise _Invalid("invalid_field", "messageId must be a string", "messageId")

    dropped = typed(out)
    if dropped:
        out[DROPPED_KEY] = {
            d.field: {"reason": f"{d.reason}; dropped", "sent": d.sent} for d in dropped
        }
    _event_time(msg, out, received_at, now or datetime.fromisoformat(received_at), limits)
    out["receivedAt"] = received_at
    return out


def _reject(index: int, exc: _Invalid, raw: Any) -> Rejection:
    where = f"message {index}"
    return Rejection(index, exc.code, f"{where}: {exc.message}", exc.field, raw)


def _write_key(doc: Mapping[str, Any]) -> str | None:
    key = doc.get("writeKey")
    return key if isinstance(key, str) else None


def parse_single(
    doc: Any, kind: str, limits: Limits, received_at: str, now: datetime | None = None
) -> Parsed:
    """The body of ``/v1/{kind}``: one message; an invalid one raises a 400 naming the field."""
    if not isinstance(doc, dict):
        raise ApiError(400, "the body must be a JSON object", "invalid_message")
    try:
        msg = normalize(doc, received_at, kind, limits, None, now)
    except _Invalid as exc:
        rej = _reject(0, exc, doc)
        raise ApiError(400, rej.message, "invalid_message", [rej.as_detail()]) from None
    return Parsed([msg], [], _write_key(doc))


def parse_batch(doc: Any, limits: Limits, received_at: str, now: datetime | None = None) -> Parsed:
    """The body of ``/v1/batch``: valid messages kept, invalid ones rejected by index.

    Raises a 400 when the body is not ``{"batch": [...]}`` or no message in it is valid.
    A ``context`` object next to ``batch`` applies to every message (the message's own wins).
    """
    if not isinstance(doc, dict) or not isinstance(doc.get("batch"), list):
        raise ApiError(400, 'the body must be {"batch": [messages...]}', "invalid_batch")
    batch_context = doc.get("context")
    if batch_context is not None and not isinstance(batch_context, dict):
        raise ApiError(400, "context must be an object", "invalid_batch")
    if not doc["batch"]:
        raise ApiError(400, "the batch is empty", "empty_batch")
    parsed = Parsed(write_key=_write_key(doc))
    for i, msg in enumerate(doc["batch"]):
        try:
            out = normalize(msg, received_at, None, limits, batch_context, now)
        except _Invalid as exc:
            parsed.rejected.append(_reject(i, exc, msg))
        else:
            parsed.messages.append(out)
            if DROPPED_KEY in out:
                parsed.indexes[len(parsed.messages) - 1] = i
    if not parsed.messages:
        raise ApiError(
            400,
            f"no message of the batch is valid ({len(parsed.rejected)} rejected)",
            "invalid_batch",
            [r.as_detail() for r in parsed.rejected],
        )
    return parsed


def body_write_key(doc: Any) -> str | None:
    """``writeKey`` of a decoded body, if it has one."""
    return _write_key(doc) if isinstance(doc, dict) else None


def parse_doc(
    doc: Any,
    endpoint: str,
    limits: Limits = Limits(),
    now: datetime | None = None,
) -> Parsed:
    """A decoded tracking body (``endpoint`` is batch or a message type) -> ``Parsed``."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    received_at = now.isoformat()
    if endpoint == "batch":
        return parse_batch(doc, limits, received_at, now)
    if endpoint not in TYPES:
        raise ValueError(f"unknown endpoint {endpoint!r}")
    return parse_single(doc, endpoint, limits, received_at, now)


def parse_request(
    body: bytes,
    headers: Mapping[str, str],
    endpoint: str,
    limits: Limits = Limits(),
    now: datetime | None = None,
) -> Parsed:
    """A tracking request body as received -> ``Parsed`` (``decode`` then ``parse_doc``).

    ``headers`` maps lower-case names to values (Starlette's ``request.headers`` does).
    """
    return parse_doc(decode(body, headers, limits), endpoint, limits, now)

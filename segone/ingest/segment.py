"""Segment-spec messages: flatten one message into the canonical ``events`` fields.

Used by file ingestion and (later) by the HTTP tracking API, so both read messages the same way.
Accepts Segment's camelCase keys and the snake_case keys of warehouse exports.
"""

from __future__ import annotations

from typing import Any

import orjson

# Segment's limit for one message; larger messages are rejected, not truncated.
MAX_MESSAGE_BYTES = 32 * 1024

KEYS = {
    "message_id": ("messageId", "message_id"),
    "type": ("type",),
    "event": ("event",),
    "name": ("name",),
    "user_id": ("userId", "user_id"),
    "anonymous_id": ("anonymousId", "anonymous_id"),
    "group_id": ("groupId", "group_id"),
    "previous_id": ("previousId", "previous_id"),
    "properties": ("properties",),
    "context": ("context",),
    "timestamp": ("timestamp", "originalTimestamp", "original_timestamp"),
    "sent_at": ("sentAt", "sent_at"),
    "received_at": ("receivedAt", "received_at"),
}
CONSUMED = {k for keys in KEYS.values() for k in keys} | {"traits", "writeKey", "write_key"}

FIELDS = (*KEYS, "traits")


def _text(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v) if isinstance(v, float) else str(v)
    return orjson.dumps(v).decode()


def flatten(msg: dict[str, Any]) -> dict[str, str | None]:
    """Canonical string fields of one Segment message, plus ``_extra`` (JSON of unknown keys).

    Validation (types, required fields) happens later, in the warehouse, for every row at once.
    """
    out: dict[str, str | None] = {}
    for field, keys in KEYS.items():
        val = None
        for k in keys:
            if msg.get(k) is not None:
                val = msg[k]
                break
        out[field] = _text(val)
    traits = msg.get("traits")
    ctx = msg.get("context")
    if traits is None and isinstance(ctx, dict):
        traits = ctx.get("traits")  # RudderStack and some Segment libraries put them here
    out["traits"] = _text(traits)
    if out["type"] is not None:
        out["type"] = out["type"].lower()
    extra = {k: v for k, v in msg.items() if k not in CONSUMED}
    out["_extra"] = orjson.dumps(extra).decode() if extra else None
    return out


def messages_of(doc: Any) -> list[Any]:
    """The messages in a parsed Segment document: one message, ``{"batch": [...]}`` or a list."""
    if isinstance(doc, dict) and isinstance(doc.get("batch"), list):
        return list(doc["batch"])
    if isinstance(doc, list):
        return doc
    return [doc]

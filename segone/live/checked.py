"""Stored documents made safe to read: every value of a person's live document (and of their
published one) of the type its readers expect, or dropped.

The door types what comes in (``segone.live.spec``), so a document written by this version holds
nothing odd. These are for documents that do: written by an older version (an amount of 1e300
summed into an infinity, stored as null), or by a bug. Readers call them only when reading the
document as it is failed (``segone.live.profile.safe_view``, the writer's fallback), so a clean
document costs nothing; ``segone repair`` re-derives such a person's document from their events.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from segone.live.aggregate import COUNTERS, empty, iso, parse_ts
from segone.live.spec import MAX_AMOUNT, MAX_QUANTITY

_INT64 = 2**63 - 1


def number(v: Any, default: float | None = 0.0) -> float | None:
    """A finite float of at most ``MAX_AMOUNT``-ish size (a sum may exceed it), else
    ``default``."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return default
    try:
        f = float(v)
    except OverflowError:
        return default
    return f if math.isfinite(f) else default


def count(v: Any) -> int:
    """A non-negative int64 count, else 0."""
    f = number(v, None)
    if f is None or f < 0:
        return 0
    return int(min(f, _INT64))


def time_text(v: Any) -> str | None:
    """A live time string (``segone.live.aggregate.iso``), else None."""
    t = parse_ts(v) if isinstance(v, str) else None
    return None if t is None else iso(t)


def texts(v: Any) -> list[str]:
    return [x for x in v if isinstance(x, str)] if isinstance(v, list) else []


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def weights(v: Any) -> dict[str, float]:
    if not isinstance(v, dict):
        return {}
    out = {}
    for k, w in v.items():
        f = number(w, None)
        if isinstance(k, str) and f is not None:
            out[k] = f
    return out


def aggregate(a: Any) -> dict[str, Any]:
    """An aggregate (``segone.live.aggregate``) with every part of its type."""
    if not isinstance(a, dict):
        return empty()
    n: dict[str, Any] = a["n"] if isinstance(a.get("n"), dict) else {}
    out = empty()
    out["n"] = {k: count(n.get(k)) for k in COUNTERS}
    out["revenue"] = number(a.get("revenue"))  # (0.0 when unreadable)
    for k in ("first_event_at", "last_event_at", "first_order_at", "last_order_at"):
        out[k] = time_text(a.get(k))
    out["previous_order_at"] = time_text(a.get("previous_order_at"))
    out["devices"] = list(dict.fromkeys(texts(a.get("devices"))))
    searches = a.get("searches")
    out["searches"] = (
        {k: count(c) for k, c in searches.items() if isinstance(k, str)}
        if isinstance(searches, dict)
        else {}
    )
    out["pricing_ts"] = sorted(t for t in map(time_text, texts(a.get("pricing_ts"))) if t)
    out["categories_bought"] = sorted(set(texts(a.get("categories_bought"))))
    out["aff"] = weights(a.get("aff"))
    out["taste"] = weights(a.get("taste"))
    return out


def _text_or_none(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


def order(o: Any) -> dict[str, Any] | None:
    if not isinstance(o, dict):
        return None
    lines = []
    for ln in _list(o.get("lines")):
        if not isinstance(ln, dict):
            continue
        q = number(ln.get("quantity"), 1.0) or 1.0
        lines.append(
            {
                "product_id": _text_or_none(ln.get("product_id")),
                "category": _text_or_none(ln.get("category")),
                "quantity": int(min(max(q, 1.0), MAX_QUANTITY)),
                "price": _amount(ln.get("price")),
                "discount": _amount(ln.get("discount")),
            }
        )
    return {
        "id": _text_or_none(o.get("id")),
        "amount": _amount(o.get("amount")),
        "discount": _amount(o.get("discount")),
        "coupon": _text_or_none(o.get("coupon")),
        "lines": lines,
    }


def _amount(v: Any) -> float:
    f = number(v)
    return f if f is not None and abs(f) <= MAX_AMOUNT else 0.0


def record(r: Any) -> dict[str, Any] | None:
    """An event record, or None when it has no readable time or sequence number."""
    if not isinstance(r, dict):
        return None
    ts, seq = time_text(r.get("ts")), r.get("seq")
    if ts is None or isinstance(seq, bool) or not isinstance(seq, int):
        return None
    out: dict[str, Any] = {"seq": seq, "ts": ts, "type": _text_or_none(r.get("type")) or ""}
    for k in ("event", "name", "anon", "query", "category"):
        if _text_or_none(r.get(k)) is not None:
            out[k] = r[k]
    if isinstance(r.get("pricing"), bool):
        out["pricing"] = r["pricing"]
    o = order(r.get("order"))
    if o is not None:
        out["order"] = o
    return out


def person(doc: Any) -> dict[str, Any] | None:
    """A person's live document with every part of its type (None for no document)."""
    if not isinstance(doc, dict) or "agg" not in doc:
        return None
    from segone.live.profile import new_doc

    out = new_doc()
    out["agg"] = aggregate(doc.get("agg"))
    out["agg_after"] = count(doc.get("agg_after"))
    records = [x for x in map(record, _list(doc.get("events"))) if x is not None]
    out["events"] = sorted(records, key=lambda x: (x["ts"], x["seq"]))
    out["folded"] = None if doc.get("folded") is None else aggregate(doc.get("folded"))
    out["folded_seq"] = count(doc.get("folded_seq"))
    traits: dict[str, Any] = doc["traits"] if isinstance(doc.get("traits"), dict) else {}
    out["traits"] = {
        col: [pair[0], stamp]
        for col, pair in traits.items()
        if isinstance(col, str)
        and isinstance(pair, list)
        and len(pair) == 2
        and isinstance(pair[0], str | bool)
        and (stamp := time_text(pair[1])) is not None
    }
    out["recent_categories"] = texts(doc.get("recent_categories"))
    out["order_ids"] = texts(doc.get("order_ids"))
    rt = doc.get("rt")
    if isinstance(rt, dict):
        out["rt"] = {
            "segments": sorted(set(texts(rt.get("segments")))),
            "stage": _text_or_none(rt.get("stage")),
            "taste": _text_or_none(rt.get("taste")),
        }
    return out


def _column(value: Any, kind: str) -> Any:
    """A published profile value of its column's type (``profile.PROFILE_TYPES``), or None."""
    if value is None:
        return None
    if kind.startswith(("int", "float")):
        f = number(value, None)
        if f is None:
            return None
        return f if kind.startswith("float") else int(max(min(f, _INT64), -_INT64))
    if kind.startswith("timestamp"):
        return time_text(value)
    if kind == "string":
        return value if isinstance(value, str) else None
    if kind == "boolean":
        return value if isinstance(value, bool) else None
    if kind.startswith("array"):
        return texts(value) if isinstance(value, list) else None
    if kind.startswith("map"):
        if not isinstance(value, dict):
            return None
        if "float" in kind:
            return weights(value)
        return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}
    return value


def published(doc: Any) -> dict[str, Any] | None:
    """A person's published document with every profile column of its type and the extras
    the readers use (``_cursor``, ``_events``, ``_devices``, ``_searches``, ``_pricing_ts``,
    ``tastes``, ``recommendations``, ``owned``, ``segments``) in their shapes; other keys kept."""
    if not isinstance(doc, dict):
        return None
    from segone.live.profile import PROFILE_TYPES

    out: dict[str, Any] = dict(doc)
    for col, kind in PROFILE_TYPES.items():
        if col in out:
            out[col] = _column(out[col], kind)
    out["_cursor"] = count(doc.get("_cursor"))
    if "_events" in doc:
        out["_events"] = [
            {k: e[k] for k in ("ts", "event", "name") if isinstance(e.get(k), str)}
            for e in _list(doc["_events"])
            if isinstance(e, dict) and time_text(e.get("ts")) is not None
        ]
    if "_devices" in doc:
        out["_devices"] = texts(doc["_devices"])
    if "_searches" in doc:
        s = doc["_searches"]
        out["_searches"] = (
            {k: count(v) for k, v in s.items() if isinstance(k, str)} if isinstance(s, dict) else {}
        )
    if "_pricing_ts" in doc:
        out["_pricing_ts"] = [t for t in map(time_text, texts(doc["_pricing_ts"])) if t]
    if "tastes" in doc:
        out["tastes"] = [
            {"category": t["category"], "share": number(t.get("share"))}
            for t in _list(doc["tastes"])
            if isinstance(t, dict) and isinstance(t.get("category"), str)
        ]
    for key in ("recommendations",):
        if key in doc:
            out[key] = [r for r in _list(doc[key]) if isinstance(r, Mapping)]
    for key in ("owned", "segments"):
        if key in doc:
            out[key] = texts(doc[key])
    return out

"""What one event contributes to a live profile (a *record*) and the sums of records (*aggregates*).

A record is a small JSON dict kept per event: ``seq``, ``ts`` and what the profile features need
(page/pricing flags, the cookie, a search term, an order's amount and lines, a category).
An aggregate sums records: counters, first/last times, the cookies seen, search-term counts,
pricing-view times, order totals and a time-weighted spend per category. ``combine`` is
associative and commutative, so a person's aggregate does not depend on the order their
events arrive in or on how two people's documents are merged.

Every timestamp is an ISO-8601 UTC string of one fixed shape, so strings compare as times.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from segone.live.spec import MAX_AMOUNT, MAX_QUANTITY
from segone.live.values import TRIM, clean, plain, text
from segone.models.taste import VIEW_EVENTS

MAIL_EVENTS = {
    "Email Delivered": "email_delivered",
    "Email Opened": "email_opened",
    "Email Link Clicked": "email_clicked",
}
ORDER_EVENT = "Order Completed"
SEARCH_EVENT = "Products Searched"
COUNTERS = (
    "events",
    "page_views",
    "pricing_views",
    "pricing_known",  # events whose pricing flag the warehouse can decide (see record_of)
    "named",  # track events (a name to compare e-mail events with)
    "email_delivered",
    "email_opened",
    "email_clicked",
    "orders",
    "discounted_orders",
    "lines",
    "items",
    "full_price_items",
    "taste_signals",  # category-bearing views and purchase lines
)
# spend per category is weighted 2 ** ((t - REF) / half-life): shares as of any later time are
# the same (the decay to "now" is one factor for every category), so nothing needs updating
REF = datetime(2020, 1, 1, tzinfo=UTC)
AFFINITY_HALF_LIFE_DAYS = 90.0  # the build's default half_life_days
VIEW_WEIGHT = 0.25  # a view counts a quarter of a purchase (segone.models.taste)
MAX_DEVICES = 100
MAX_TERMS = 100
MAX_PRICING = 200
MAX_CATEGORIES = 200
MAX_EXPONENT = 400.0  # 2 ** 400 ~ 2.6e120: times any amount and quantity, still finite


def iso(t: datetime) -> str:
    """The one string shape of a time in live documents (UTC, microseconds)."""
    if t.tzinfo is not UTC:  # (a UTC time needs no conversion)
        if t.tzinfo is None:
            t = t.replace(tzinfo=UTC)
        t = t.astimezone(UTC)
    return t.isoformat(timespec="microseconds")


@lru_cache(maxsize=16384)
def _parse_text(v: str) -> datetime | None:
    """``parse_ts`` of a string, remembered: live documents hold the same times over and over
    (event records, aggregates, published values), and datetimes are immutable."""
    try:
        t = datetime.fromisoformat(v.strip())
    except ValueError:
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def parse_ts(v: Any) -> datetime | None:
    """An aware UTC datetime from an ISO string or a datetime; None when unreadable."""
    if type(v) is str:
        return _parse_text(v)
    if type(v) is datetime and v.tzinfo is UTC:  # one already (what astimezone would return)
        return v
    if v is None or v != v:  # None, NaN, pandas NaT
        return None
    if isinstance(v, datetime):
        t = v
    elif isinstance(v, str):
        try:
            t = datetime.fromisoformat(v.strip())
        except ValueError:
            return None
    elif hasattr(v, "to_pydatetime"):  # pandas Timestamp
        t = v.to_pydatetime()
    else:
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def days(later: datetime | None, earlier: datetime | None) -> float | None:
    if later is None or earlier is None:
        return None
    return (later - earlier).total_seconds() / 86_400.0


@lru_cache(maxsize=4096)
def category_level(path: str, level: int | None = 2) -> str:
    """'A > B > C' cut to its first ``level`` levels (as ``segone.models.taste``)."""
    parts = [p.strip() for p in path.split(">")]
    return " > ".join(parts if level is None else parts[:level])


def _num(v: Any) -> float | None:
    """A number of at most ``MAX_AMOUNT`` (the door drops others; an older document's may
    still hold them), else None."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        if isinstance(v, str):
            try:
                f = float(v)
            except ValueError:
                return None
            return f if math.isfinite(f) and abs(f) <= MAX_AMOUNT else None
        return None
    try:
        f = float(v)
    except OverflowError:
        return None
    return f if math.isfinite(f) and abs(f) <= MAX_AMOUNT else None


def order_of(msg: Mapping[str, Any]) -> dict[str, Any] | None:
    """The order of an ``Order Completed`` track event (Segment e-commerce spec), or None.

    ``{"id", "amount", "discount", "coupon", "lines": [{product_id, category, quantity,
    price, discount}]}``; ``amount`` is ``total``, else ``revenue``, else the lines' sum less
    the order discount. A product's ``discount`` (not in the spec) is its line discount.
    """
    kind = (plain(text(msg.get("type"))) or "").lower()
    if kind != "track" or plain(text(msg.get("event"))) != ORDER_EVENT:
        return None
    props = msg.get("properties")
    props = props if isinstance(props, dict) else {}
    lines: list[dict[str, Any]] = []
    products = props.get("products")
    for p in products if isinstance(products, list) else ():
        if not isinstance(p, dict):
            continue
        qty = _num(p.get("quantity"))
        q = int(min(qty, MAX_QUANTITY)) if qty is not None and qty >= 1 else 1
        lines.append(
            {
                "product_id": plain(text(p.get("product_id") or p.get("sku"))),
                "category": plain(text(p.get("category"))),
                "quantity": q,
                "price": _num(p.get("price")) or 0.0,
                "discount": _num(p.get("discount")) or 0.0,
            }
        )
    discount = _num(props.get("discount")) or 0.0
    amount = _num(props.get("total"))
    if amount is None:
        amount = _num(props.get("revenue"))
    if amount is None:
        amount = sum(ln["quantity"] * ln["price"] - ln["discount"] for ln in lines) - discount
    return {
        "id": plain(text(props.get("order_id") or props.get("checkout_id"))),
        "amount": amount,
        "discount": discount,
        "coupon": plain(text(props.get("coupon"))),
        "lines": lines,
    }


def record_of(msg: Mapping[str, Any], seq: int, ts: datetime) -> dict[str, Any]:
    """What one message contributes, as the warehouse would read it (fields trimmed, empty as
    missing). ``pricing`` is True/False, or absent when the warehouse's flag would be null (a
    page with neither a pricing name nor a path)."""
    kind = (clean(msg.get("type")) or "").lower()
    props = msg.get("properties")
    props = props if isinstance(props, dict) else {}
    r: dict[str, Any] = {"seq": seq, "ts": iso(ts), "type": kind}
    event = clean(msg.get("event")) if kind == "track" else None
    name = clean(msg.get("name")) if kind in ("page", "screen") else None
    if event:
        r["event"] = event
    if name:
        r["name"] = name
    if kind in ("page", "screen"):
        path = props.get("path")
        path = path if isinstance(path, str) else None
        if (name is not None and name.lower() == "pricing") or (
            path is not None and path.startswith("/pricing")
        ):
            r["pricing"] = True
        elif path is not None:
            r["pricing"] = False
    else:
        r["pricing"] = False
    anon = clean(msg.get("anonymousId"))
    if anon:
        r["anon"] = anon
    if event == SEARCH_EVENT:
        q = props.get("query")
        term = q.lower().strip(TRIM) if isinstance(q, str) else ""
        if term:
            r["query"] = term
    cat = props.get("category")
    if (kind in ("page", "screen") or event in VIEW_EVENTS) and isinstance(cat, str) and cat:
        r["category"] = cat
    if event == ORDER_EVENT:  # what order_of asks, decided already
        order = order_of(msg)
        if order is not None:
            r["order"] = order
    return r


def empty() -> dict[str, Any]:
    return {
        "n": dict.fromkeys(COUNTERS, 0),
        "revenue": 0.0,
        "first_event_at": None,
        "last_event_at": None,
        "first_order_at": None,
        "last_order_at": None,
        "previous_order_at": None,
        "devices": [],
        "searches": {},
        "pricing_ts": [],
        "categories_bought": [],
        "aff": {},
        "taste": {},
    }


def single(r: Mapping[str, Any]) -> dict[str, Any]:
    """The aggregate of one record."""
    a = empty()
    n = a["n"]
    ts = r["ts"]
    n["events"] = 1
    a["first_event_at"] = a["last_event_at"] = ts
    is_page = r.get("type") in ("page", "screen")
    n["page_views"] = int(is_page)
    if "pricing" in r:
        n["pricing_known"] = 1
        if r["pricing"]:
            n["pricing_views"] = 1
            a["pricing_ts"] = [ts]
    if "event" in r:
        n["named"] = 1
        mail = MAIL_EVENTS.get(r["event"])
        if mail:
            n[mail] = 1
    if "anon" in r:
        a["devices"] = [r["anon"]]
    if "query" in r:
        a["searches"] = {r["query"]: 1}
    if "category" in r:
        a["taste"] = {category_level(r["category"]): VIEW_WEIGHT}
        n["taste_signals"] = 1
    order = r.get("order")
    if order is not None:
        _add_order(a, order, ts)
    return a


def _add_order(a: dict[str, Any], order: Mapping[str, Any], ts: str) -> None:
    n = a["n"]
    n["orders"] = 1
    n["discounted_orders"] = int(order.get("discount", 0) > 0 or bool(order.get("coupon")))
    a["revenue"] = float(order.get("amount") or 0.0)
    a["first_order_at"] = a["last_order_at"] = ts
    t = parse_ts(ts)
    assert t is not None
    scale = 2.0 ** _exponent(t)
    cats: set[str] = set()
    for ln in order.get("lines", []):
        q = int(ln["quantity"])
        n["lines"] += 1
        n["items"] += q
        if not ln.get("discount"):
            n["full_price_items"] += q
        c = ln.get("category")
        if c:
            cats.add(c)
            value = q * float(ln["price"]) - float(ln.get("discount") or 0.0)
            a["aff"][c] = a["aff"].get(c, 0.0) + value * scale
            lvl = category_level(c)
            a["taste"][lvl] = a["taste"].get(lvl, 0.0) + 1.0
            n["taste_signals"] += 1
    a["categories_bought"] = sorted(cats)


def _exponent(t: datetime) -> float:
    """The exponent of a purchase's weight, within +-``MAX_EXPONENT``: the accepted window of
    event times is well inside, and beyond it 2 ** x would overflow (or reach infinity times
    an amount)."""
    x = (t - REF).total_seconds() / 86_400.0 / AFFINITY_HALF_LIFE_DAYS
    return min(max(x, -MAX_EXPONENT), MAX_EXPONENT)


def _lo(x: str | None, y: str | None) -> str | None:
    return y if x is None else x if y is None else min(x, y)


def _hi(x: str | None, y: str | None) -> str | None:
    return y if x is None else x if y is None else max(x, y)


def _add(x: Mapping[str, float], y: Mapping[str, float]) -> dict[str, Any]:
    out = dict(x)
    for k, v in y.items():
        out[k] = out.get(k, 0) + v
    return out


def combine(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """The aggregate of two disjoint sets of records."""
    times = sorted(
        (t for t in (a["last_order_at"], a["previous_order_at"], b["last_order_at"],
                     b["previous_order_at"]) if t is not None),
        reverse=True,
    )  # fmt: skip
    searches = _top_terms_kept(_add(a["searches"], b["searches"]))
    devices = list(dict.fromkeys([*a["devices"], *b["devices"]]))[:MAX_DEVICES]
    return {
        "n": _add(a["n"], b["n"]),
        "revenue": a["revenue"] + b["revenue"],
        "first_event_at": _lo(a["first_event_at"], b["first_event_at"]),
        "last_event_at": _hi(a["last_event_at"], b["last_event_at"]),
        "first_order_at": _lo(a["first_order_at"], b["first_order_at"]),
        "last_order_at": times[0] if times else None,
        "previous_order_at": times[1] if len(times) > 1 else None,
        "devices": devices,
        "searches": searches,
        "pricing_ts": sorted([*a["pricing_ts"], *b["pricing_ts"]])[-MAX_PRICING:],
        "categories_bought": sorted({*a["categories_bought"], *b["categories_bought"]})[
            :MAX_CATEGORIES
        ],
        "aff": _add(a["aff"], b["aff"]),
        "taste": _add(a["taste"], b["taste"]),
    }


_COUNTER_SET = frozenset(COUNTERS)
_PAGE_TYPES = ("page", "screen")


def _top_terms_kept(searches: dict[str, Any]) -> dict[str, Any]:
    """``searches`` with only the ``MAX_TERMS`` most frequent terms (ties by term)."""
    if len(searches) <= MAX_TERMS:
        return searches
    return dict(sorted(searches.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_TERMS])


def add_record(a: Mapping[str, Any], r: Mapping[str, Any]) -> dict[str, Any]:
    """``combine(a, single(r))`` for an aggregate ``a`` made by this module (its lists sorted,
    without repeats and within their limits, as ``combine`` leaves them), without rebuilding
    what one record leaves as it was: the parts ``r`` does not touch are ``a``'s own objects
    (aggregates are never changed in place, so sharing them is safe)."""
    if "order" in r:  # (rare: the general path)
        return combine(a, single(r))
    ts = r["ts"]
    n = dict(a["n"])
    if not n.keys() >= _COUNTER_SET:  # as combine: every counter, 0 unless counted
        for k in COUNTERS:
            n.setdefault(k, 0)
    n["events"] += 1
    if r.get("type") in _PAGE_TYPES:
        n["page_views"] += 1
    pricing = a["pricing_ts"]
    if "pricing" in r:
        n["pricing_known"] += 1
        if r["pricing"]:
            n["pricing_views"] += 1
            pricing = list(pricing)
            bisect.insort(pricing, ts)  # sorted([*pricing, ts]) of a sorted list
            pricing = pricing[-MAX_PRICING:]
    if "event" in r:
        n["named"] += 1
        mail = MAIL_EVENTS.get(r["event"])
        if mail:
            n[mail] += 1
    devices = a["devices"]
    anon = r.get("anon")
    if anon is not None and anon not in devices:  # dict.fromkeys([*devices, anon])
        devices = [*devices, anon][:MAX_DEVICES]
    searches = a["searches"]
    if "query" in r:
        searches = _top_terms_kept(_add(searches, {r["query"]: 1}))
    taste = a["taste"]
    if "category" in r:
        taste = _add(taste, {category_level(r["category"]): VIEW_WEIGHT})
        n["taste_signals"] += 1
    first, last = a["first_event_at"], a["last_event_at"]
    return {
        "n": n,
        "revenue": a["revenue"] + 0.0,
        "first_event_at": ts if first is None else min(first, ts),
        "last_event_at": ts if last is None else max(last, ts),
        "first_order_at": a["first_order_at"],
        "last_order_at": a["last_order_at"],
        "previous_order_at": a["previous_order_at"],
        "devices": devices,
        "searches": searches,
        "pricing_ts": pricing,
        "categories_bought": a["categories_bought"],
        "aff": a["aff"],
        "taste": taste,
    }


def aggregate(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    out = empty()
    for r in records:
        out = combine(out, single(r))
    return out

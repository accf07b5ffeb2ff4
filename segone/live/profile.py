"""The live profile: a person's document in the online store, updated by each event, and the
view of it with the columns and meaning of the warehouse ``profiles`` table.

A person document (kind ``person``) holds the aggregate of their live events (see
``segone.live.aggregate``), the latest ~500 event records (``seq``, ``ts``, type, event/name,
category, ...), the latest profile traits from identify calls, recent categories and the
real-time state ``rt`` (``segone.live.realtime.remember``).

``view(published, doc, now)`` adds the live part to the batch values published at the last
build. The published document carries ``_cursor``: events with ``seq <= _cursor`` are in its
values already, so only later events count. Maintained live, exactly as the batch computes them
(a test replays warehouse events and compares): ``events``, ``first_event_at``,
``last_event_at``, ``page_views``, ``pricing_views``, ``pricing_views_30d``, ``email_delivered``,
``email_opened``, ``email_clicked``, ``email_open_rate``, ``email_click_rate``, ``devices``,
``top_search_terms``; from ``Order Completed`` events (``order_id``, ``total``/``revenue``,
``discount``, ``coupon``, ``products[]`` with ``category``, ``quantity``, ``price``):
``orders``, ``revenue``, ``aov``, ``first/last/previous_order_at``, ``recency_days``, the three
gaps, ``discount_order_share``, ``items``, ``full_price_item_share``, ``categories_bought``;
recomputed as of ``now``: ``recency_days``, ``tenure_days``, ``days_since_seen``,
``first_seen``, ``last_seen``, ``channels`` and, with lifecycle settings,
``expected_gap_days``/``lifecycle_stage``. Identify traits overlay ``first_name``,
``last_name``, ``city``, ``postcode`` and the consent flags
(recognised under the same names as CRM columns, e.g. ``emailOptIn``, ``address.postalCode``).

Left at the published value (they need the whole population or data the server never sees):
scores (``p_alive``, ``clv``, ...), ``revenue_percentile`` and RFM, interactions and sentiment,
CRM columns other than the traits above, ``enrichment``, ``channels_ordered``, ``returned_items``,
``rebought_after_good_days``, and ``category_affinity``/``top_category`` (the preference
model's, ``segone.models.affinity``: a person the build has not seen has none until the next
build). Live orders are not returned or cancelled later; an
``order_id`` seen again counts once. Without the published extras (``published_doc``'s
``devices``, ``searches``, ``pricing_ts``, ``events``), ``devices`` takes the larger of the two
counts, ``top_search_terms`` the published list, and ``pricing_views_30d`` does not let the
published views age out of the window. More than 500 live events between two builds make a
published person's live part approximate (the oldest are folded together).
"""

from __future__ import annotations

import bisect
import logging
import math
import operator
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from segone.ingest.kinds import CUSTOMERS, norm
from segone.live.aggregate import (
    add_record,
    aggregate,
    category_level,
    combine,
    days,
    empty,
    iso,
    parse_ts,
    record_of,
)
from segone.live.stage import judge
from segone.live.values import plain, text, traits_of
from segone.segments.lifecycle import LifecycleSettings

log = logging.getLogger(__name__)

MAX_EVENTS = 500
MAX_RECENT_CATEGORIES = 20
MAX_ORDER_IDS = 100

#: Every column of the warehouse ``profiles`` table and its type (as ``segone build`` writes it).
PROFILE_TYPES: dict[str, str] = {
    "customer_id": "string",
    "identifiers": "int64",
    "emails": "int64",
    "phones": "int64",
    "devices_known": "int64",
    "has_account": "boolean",
    "has_loyalty_card": "boolean",
    "has_social_handle": "boolean",
    "enrichment": "map<string, string>",
    "orders": "int64",
    "revenue": "float64",
    "first_order_at": "timestamp('UTC', 6)",
    "last_order_at": "timestamp('UTC', 6)",
    "discount_order_share": "float64",
    "channels_ordered": "array<string>",
    "previous_order_at": "timestamp('UTC', 6)",
    "aov": "float64",
    "recency_days": "float64",
    "mean_gap_days": "float64",
    "last_gap_days": "float64",
    "prior_gap_days": "float64",
    "items": "int64",
    "full_price_item_share": "float64",
    "returned_items": "int64",
    "categories_bought": "array<string>",
    "category_affinity": "map<string, float64>",
    "top_category": "string",
    "rebought_after_good_days": "float64",
    "events": "int64",
    "first_event_at": "timestamp('UTC', 6)",
    "last_event_at": "timestamp('UTC', 6)",
    "page_views": "int64",
    "pricing_views": "int64",
    "pricing_views_30d": "int64",
    "email_delivered": "int64",
    "email_opened": "int64",
    "email_clicked": "int64",
    "devices": "int64",
    "email_open_rate": "float64",
    "email_click_rate": "float64",
    "top_search_terms": "array<string>",
    "social_follower": "boolean",
    "social_posts": "int64",
    "reviews": "int64",
    "avg_rating": "float64",
    "support_tickets": "int64",
    "avg_sentiment": "float64",
    "texts": "int64",
    "last_interaction_at": "timestamp('UTC', 6)",
    "crm_stage": "string",
    "consent_email": "boolean",
    "consent_sms": "boolean",
    "consent_push": "boolean",
    "first_name": "string",
    "last_name": "string",
    "city": "string",
    "postcode": "string",
    "source_records": "int64",
    "sources": "array<string>",
    "first_record_at": "timestamp('UTC', 6)",
    "first_seen": "timestamp('UTC', 6)",
    "last_seen": "timestamp('UTC', 6)",
    "tenure_days": "float64",
    "days_since_seen": "float64",
    "channels": "array<string>",
    "revenue_percentile": "float64",
    "r_score": "int8",
    "f_score": "int8",
    "m_score": "int8",
    "rfm_cell": "string",
    "p_alive": "float64",
    "expected_purchases": "float64",
    "expected_order_value": "float64",
    "clv": "float64",
    "churn_probability": "float64",
    "p_email_click": "float64",
    "expected_gap_days": "float64",
    "lifecycle_stage": "string",
    "as_of": "timestamp('UTC', 6)",
}
PROFILE_COLUMNS = tuple(PROFILE_TYPES)
TIMESTAMP_COLUMNS = frozenset(c for c, t in PROFILE_TYPES.items() if t.startswith("timestamp"))

_TRAIT_COLUMNS = ("first_name", "last_name", "city", "postcode")
_CONSENT_COLUMNS = ("consent_email", "consent_sms", "consent_push")
# trait name (normalised like a column name) -> profile column, as CRM columns are recognised
TRAIT_NAMES: dict[str, str] = {
    alias: f.name
    for f in CUSTOMERS.fields
    if f.name in (*_TRAIT_COLUMNS, *_CONSENT_COLUMNS)
    for alias in (norm(f.name), *f.aliases)
}
_TRUE = ("true", "t", "yes", "y", "1", "on")
_FALSE = ("false", "f", "no", "n", "0", "off")


# -- the document ---------------------------------------------------------------------------------
def new_doc() -> dict[str, Any]:
    return {
        "v": 1,
        "agg": empty(),  # every live event with seq > agg_after
        "agg_after": 0,
        "events": [],  # the latest MAX_EVENTS records, by (ts, seq)
        "folded": None,  # aggregate of older records dropped from the list
        "folded_seq": 0,
        "traits": {},  # column -> [value, iso ts]
        "recent_categories": [],
        "order_ids": [],
    }


def _bool(v: Any) -> bool | None:
    if isinstance(v, bool):
        return v
    s = (plain(text(v)) or "").lower()
    return True if s in _TRUE else False if s in _FALSE else None


def _profile_traits(msg: Mapping[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    traits = traits_of(msg)
    if not traits:
        return found
    address = traits.get("address")
    flat = dict(traits)
    if isinstance(address, dict):  # Segment's reserved address trait: {city, postalCode, ...}
        flat.update({k: v for k, v in address.items() if norm(k) in ("city", "postalcode")})
    for key, value in flat.items():
        col = TRAIT_NAMES.get(norm(key))
        if col is None:
            continue
        v = _bool(value) if col in _CONSENT_COLUMNS else plain(text(value))
        if v is not None:
            found[col] = v
    return found


def _doc(doc: Mapping[str, Any] | None) -> Any:
    """The document, or None for a missing or empty one."""
    return doc if doc and "agg" in doc else None


def apply_event(
    doc: dict[str, Any] | None, msg: Mapping[str, Any], seq: int, now: datetime
) -> dict[str, Any]:
    """``doc`` updated with one message (``seq`` from the store). Updates ``doc`` in place and
    returns it (a new document when ``doc`` is None or empty)."""
    doc = _doc(doc) or new_doc()
    ts = parse_ts(msg.get("timestamp")) or parse_ts(msg.get("receivedAt")) or now
    r = record_of(msg, seq, ts)
    order = r.get("order")
    if order is not None and order["id"]:
        if order["id"] in doc["order_ids"]:  # a re-sent order counts once
            del r["order"]
        else:
            doc["order_ids"] = [*doc["order_ids"], order["id"]][-MAX_ORDER_IDS:]
    doc["agg"] = add_record(doc["agg"], r)  # combine(doc["agg"], single(r))
    evs = doc["events"]
    last = evs[-1] if evs else None
    if last is not None and (last["ts"], last["seq"]) > (r["ts"], r["seq"]):
        _insert(doc, [r])  # an event that arrived late
    elif len(evs) < MAX_EVENTS:
        evs.append(r)  # where _insert puts it
    else:
        _insert(doc, [r])
    stamp = r["ts"]
    for col, value in _profile_traits(msg).items():
        old = doc["traits"].get(col)
        if old is None or old[1] <= stamp:
            doc["traits"][col] = [value, stamp]
    cats = [r["category"]] if "category" in r else []
    if "order" in r:
        cats += [ln["category"] for ln in r["order"].get("lines", []) if ln["category"]]
    if cats:
        doc["recent_categories"] = [*doc["recent_categories"], *cats][-MAX_RECENT_CATEGORIES:]
    return doc


def _ts(r: Mapping[str, Any]) -> str:
    return r["ts"]


def _key(r: Mapping[str, Any]) -> tuple[str, int]:
    return (r["ts"], r["seq"])


def _insert(doc: dict[str, Any], records: list[dict[str, Any]]) -> None:
    evs = doc["events"]
    for r in records:
        last = evs[-1] if evs else None
        if last is None or (last["ts"], last["seq"]) <= (r["ts"], r["seq"]):
            evs.append(r)  # in order: where insort would put it
        else:
            bisect.insort(evs, r, key=_key)
    if len(evs) > MAX_EVENTS:
        drop, doc["events"] = evs[: len(evs) - MAX_EVENTS], evs[len(evs) - MAX_EVENTS :]
        folded = aggregate(drop)
        doc["folded"] = folded if doc["folded"] is None else combine(doc["folded"], folded)
        doc["folded_seq"] = max(doc["folded_seq"], *(r["seq"] for r in drop))


def merge_docs(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any]:
    """One document from two people's (``a`` the one kept): sums added, events interleaved by
    time, the latest value of each trait (an order recorded for both would count twice). A
    document with a value of the wrong type (an older version's) is merged checked."""
    try:
        return _merge_docs(a, b)
    except Exception as exc:  # an odd stored value: merge the checked documents
        from segone.live import checked

        log.error(
            "a stored profile document held an odd value (%s) when merged", type(exc).__name__
        )
        return _merge_docs(checked.person(a), checked.person(b))


def _merge_docs(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any]:
    a, b = _doc(a), _doc(b)
    if a is None or b is None:
        out = a if b is None else b
        return out if out is not None else new_doc()
    out = new_doc()
    out["agg"] = combine(a["agg"], b["agg"])
    # the part before the later rebase is re-derived from the records when needed
    out["agg_after"] = min(a["agg_after"], b["agg_after"])
    folded = [f for f in (a["folded"], b["folded"]) if f is not None]
    out["folded"] = combine(*folded) if len(folded) == 2 else folded[0] if folded else None
    out["folded_seq"] = max(a["folded_seq"], b["folded_seq"])
    out["events"] = list(a["events"])
    _insert(out, list(b["events"]))
    traits = dict(b["traits"])
    for col, (value, stamp) in a["traits"].items():
        if col not in traits or traits[col][1] <= stamp:
            traits[col] = [value, stamp]
    out["traits"] = traits
    out["recent_categories"] = [*b["recent_categories"], *a["recent_categories"]][
        -MAX_RECENT_CATEGORIES:
    ]
    out["order_ids"] = list(dict.fromkeys([*b["order_ids"], *a["order_ids"]]))[-MAX_ORDER_IDS:]
    out["rt"] = a.get("rt") if a.get("rt") is not None else b.get("rt")
    return out


def live_part(doc: Mapping[str, Any] | None, cursor: int = 0) -> dict[str, Any]:
    """The aggregate of the person's live events with ``seq > cursor``."""
    doc = _doc(doc)
    if doc is None:
        return empty()
    if cursor <= doc["agg_after"]:
        return dict(doc["agg"])
    part = aggregate(r for r in doc["events"] if r["seq"] > cursor)
    if doc["folded"] is not None and doc["folded_seq"] > cursor:  # approximate (see module doc)
        part = combine(part, doc["folded"])
    return part


def rebase(doc: dict[str, Any], cursor: int, *, drop_records: bool = False) -> dict[str, Any]:
    """``doc`` with its aggregate reduced to events after a new build's ``cursor`` (in place);
    a no-op unless the cursor moved. Call it when a person's published document is newer.

    ``drop_records``: also drop the event records the build has read (``seq <= cursor``),
    except orders (the server does not offer what a person bought among their kept records).
    Only records after the cursor count from then on, unless the published document lacks the
    build's recent events (``_events``), when ``rule_events`` falls back on all records; the
    caller says which. Without this, every person with 500 live events carried all 500 in
    their document for good (64 KB, read and written again with each of their events)."""
    if _doc(doc) is not None and cursor > doc["agg_after"]:
        doc["agg"] = live_part(doc, cursor)
        doc["agg_after"] = cursor
        if doc["folded_seq"] <= cursor:
            doc["folded"], doc["folded_seq"] = None, 0
        if drop_records:
            doc["events"] = [r for r in doc["events"] if r["seq"] > cursor or "order" in r]
    return doc


def cursor_of(published: Mapping[str, Any] | None) -> int:
    return int(published.get("_cursor") or 0) if published else 0


def rule_events(
    published: Mapping[str, Any] | None,
    doc: Mapping[str, Any] | None,
    names: Collection[str] | None = None,
    *,
    after: datetime | None = None,
) -> list[dict[str, Any]]:
    """The events that rules' ``event:`` conditions count: the published recent events (if the
    build published them) and the live ones after its cursor, as ``{seq, event|name,
    timestamp}`` with datetime timestamps; only those named in ``names`` when given, and only
    live ones later than ``after`` when given (an aware time: the conditions' longest window)."""
    out: list[dict[str, Any]] = []
    cursor = 0
    if published is not None and "_events" in published:
        cursor = cursor_of(published)
        for e in published["_events"]:
            if names is None or (e.get("event") or e.get("name")) in names:
                out.append({"seq": 0, **e, "timestamp": parse_ts(e.get("ts"))})
    records = (_doc(doc) or {}).get("events", [])
    if after is not None and after.tzinfo is not None and records:
        # records are in time order, their times strings of one shape
        start = bisect.bisect_right(records, _iso_cached(after), key=_ts)
        records = records[start:] if start else records
    if names is not None and None not in names:  # (a common case, for speed)
        picked = [r for r in records if (r.get("event") or r.get("name")) in names]
    else:
        picked = [
            r
            for r in records
            if (w := r.get("event") or r.get("name")) is not None and (names is None or w in names)
        ]
    out += [
        {
            "seq": r["seq"],
            "event": r.get("event"),
            "name": r.get("name"),
            "timestamp": parse_ts(r["ts"]),
        }
        for r in picked
        if r["seq"] > cursor
    ]
    return out


def taste_signals(published: Mapping[str, Any] | None, doc: Mapping[str, Any] | None) -> int:
    """``taste_input``'s number of signals alone."""
    return int(_live(_doc(doc), cursor_of(published))["n"]["taste_signals"])


def taste_input(
    published: Mapping[str, Any] | None, doc: Mapping[str, Any] | None
) -> tuple[dict[str, float], int, dict[str, float]]:
    """(live category mix after the cursor, number of signals in it, published category shares)
    for ``segone.live.realtime``, categories at the second level of their path. The published
    shares are the build's taste rows (``tastes``: category, share) when published, else the
    profile's ``category_affinity``; its ``top_category`` is always among them."""
    live = _live(_doc(doc), cursor_of(published))
    base: dict[str, float] = {}
    tastes = (published or {}).get("tastes")  # the build's category_affinity rows, if published
    if tastes:
        shares = {str(t["category"]): float(t.get("share") or 0.0) for t in tastes}
    else:
        shares = {
            k: float(v or 0.0)
            for k, v in _plain_map((published or {}).get("category_affinity")).items()
        }
    for cat, share in shares.items():
        lvl = category_level(cat)
        base[lvl] = base.get(lvl, 0.0) + share
    top = (published or {}).get("top_category")
    if isinstance(top, str) and category_level(top) not in base:
        base[category_level(top)] = 1.0  # the favourite is always part of the baseline
    return dict(live["taste"]), int(live["n"]["taste_signals"]), base


# -- the view -------------------------------------------------------------------------------------
def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _plain_map(v: Any) -> dict[str, Any]:
    if isinstance(v, dict):
        return v
    if isinstance(v, list | tuple):  # a map read by pandas/arrow: (key, value) pairs
        return {p[0]: p[1] for p in v if isinstance(p, list | tuple) and len(p) == 2}
    return {}


_TIMESTAMP_COLUMNS = tuple(c for c in PROFILE_COLUMNS if c in TIMESTAMP_COLUMNS)
_NO_VALUES: dict[str, Any] = dict.fromkeys(PROFILE_COLUMNS)  # read only: copied, never changed
_NO_AGGREGATE = empty()  # read only


def _values(published: Mapping[str, Any] | None) -> dict[str, Any]:
    """The published value of every column, None for a missing one (``_missing``: None or
    NaN), times parsed."""
    if published is None:
        return _NO_VALUES.copy()
    values = list(map(published.get, PROFILE_COLUMNS))
    try:  # a value unequal to itself would be a NaN (none in JSON documents)
        no_nan = not any(map(operator.ne, values, values))
    except Exception:  # arrays, pandas' NA, ...: no shortcut
        no_nan = False
    if no_nan:
        out = dict(zip(PROFILE_COLUMNS, values, strict=True))
    else:
        out = {c: None if _missing(v) else v for c, v in zip(PROFILE_COLUMNS, values, strict=True)}
    for col in _TIMESTAMP_COLUMNS:
        out[col] = parse_ts(out[col])
    return out


def _top_terms(counts: Mapping[str, int]) -> list[str] | None:
    if not counts:
        return None
    return [t for t, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:3]]


_iso_cached = lru_cache(maxsize=64)(iso)  # for the few times a batch of events shares


@lru_cache(maxsize=64)
def _window(now: datetime) -> tuple[str, str, datetime]:
    """The 30 days before ``now``: as live time strings (lo, hi) and the datetime they start."""
    since = now - timedelta(days=30)
    return iso(since), iso(now), since


def _live(doc: Mapping[str, Any] | None, cursor: int) -> Mapping[str, Any]:
    """``live_part`` to read (not to change): the document's own aggregate when it is the one."""
    if doc is None:
        return _NO_AGGREGATE
    if cursor <= doc["agg_after"]:
        return doc["agg"]
    return live_part(doc, cursor)


def view(
    published: Mapping[str, Any] | None,
    doc: Mapping[str, Any] | None,
    now: datetime,
    *,
    person_id: str | None = None,
    identifiers: Sequence[str] | None = None,
    lifecycle: LifecycleSettings | None = None,
    median_gap_days: float | None = None,
) -> dict[str, Any]:
    """The person's profile as of ``now``: every ``profiles`` column (see the module doc).

    ``identifiers`` (``tx.identity.identifiers_of``) recount the identifier columns; ``lifecycle``
    (with the build's ``median_gap_days``) recomputes ``expected_gap_days`` and
    ``lifecycle_stage``, which otherwise stay as published.
    """
    # written for speed (the server calls it on every event): a sum of a published and a live
    # value is the one known when the other is None, a first / last time the least / greatest
    # known one (the first of equals)
    p = _values(published)
    pub = _NO_VALUES if published is None else dict(p)  # the published values, read only
    d = _doc(doc)
    live = _live(d, cursor_of(published))
    n = live["n"]
    extras = published or {}
    if person_id is not None:
        p["customer_id"] = person_id

    # events
    x, y = pub["events"], n["events"] or None
    p["events"] = y if x is None else x if y is None else x + y
    x, y = pub["first_event_at"], parse_ts(live["first_event_at"])
    p["first_event_at"] = y if x is None else x if y is None else min(x, y)
    x, y = pub["last_event_at"], parse_ts(live["last_event_at"])
    p["last_event_at"] = y if x is None else x if y is None else max(x, y)
    p["page_views"] = (pub["page_views"] or 0) + n["page_views"]
    x, y = pub["pricing_views"], n["pricing_views"] if n["pricing_known"] else None
    p["pricing_views"] = y if x is None else x if y is None else x + y
    named = n["named"]
    x, y = pub["email_delivered"], n["email_delivered"] if named else None
    p["email_delivered"] = y if x is None else x if y is None else x + y
    x, y = pub["email_opened"], n["email_opened"] if named else None
    p["email_opened"] = y if x is None else x if y is None else x + y
    x, y = pub["email_clicked"], n["email_clicked"] if named else None
    p["email_clicked"] = y if x is None else x if y is None else x + y
    delivered = p["email_delivered"]
    p["email_open_rate"] = p["email_opened"] / delivered if delivered else None
    p["email_click_rate"] = p["email_clicked"] / delivered if delivered else None
    if "_devices" in extras:
        p["devices"] = len({*extras["_devices"], *live["devices"]})
    elif published is not None and pub["devices"] is not None:
        p["devices"] = max(pub["devices"], len(live["devices"]))
    else:
        p["devices"] = len(live["devices"]) if n["events"] else pub["devices"]
    if published is None or "_searches" in extras:
        counts = dict(extras.get("_searches") or {})
        for term, k in live["searches"].items():
            counts[term] = counts.get(term, 0) + k
        p["top_search_terms"] = _top_terms(counts)
    elif pub["top_search_terms"] is None:
        p["top_search_terms"] = _top_terms(live["searches"])
    lo, hi, since = _window(now)  # live times are strings of one shape, kept in order
    pricing = live["pricing_ts"]
    window = bisect.bisect_right(pricing, hi) - bisect.bisect_left(pricing, lo) if pricing else 0
    if "_pricing_ts" in extras:
        old = [t for t in (parse_ts(x) for x in extras["_pricing_ts"]) if t and since <= t <= now]
        p["pricing_views_30d"] = len(old) + window
    else:
        p["pricing_views_30d"] = (pub["pricing_views_30d"] or 0) + window

    # orders
    _orders(p, pub, live, now)
    if isinstance(p["category_affinity"], list | tuple):
        p["category_affinity"] = _plain_map(p["category_affinity"])

    # traits from identify calls
    for col, (value, _) in ((d or {}).get("traits") or {}).items():
        if col in p:
            p[col] = value

    if identifiers is not None:
        _identifier_columns(p, identifiers)

    # as of now
    first = pub["first_seen"]
    for t in (p["first_event_at"], p["first_order_at"]):
        if t is not None and (first is None or t < first):
            first = t
    last = pub["last_seen"]
    for t in (p["last_event_at"], p["last_order_at"]):
        if t is not None and (last is None or t > last):
            last = t
    p["first_seen"], p["last_seen"] = first, last
    p["tenure_days"] = None if first is None else (now - first).total_seconds() / 86_400.0
    p["days_since_seen"] = None if last is None else (now - last).total_seconds() / 86_400.0
    p["social_follower"] = bool(p["social_follower"])
    p["channels"] = _channels(p)
    p["as_of"] = now
    if lifecycle is not None:
        # P(alive) was fitted before live orders: with some, judge on the cadence
        p["expected_gap_days"], p["lifecycle_stage"] = judge(
            p, lifecycle, median_gap_days, now, fitted=not n["orders"]
        )
    return p


def safe_view(
    published: Mapping[str, Any] | None,
    doc: Mapping[str, Any] | None,
    now: datetime,
    **kw: Any,
) -> dict[str, Any]:
    """``view``, whatever the stored documents hold: when reading them as they are fails (a
    value of the wrong type, from an older version or a bug), they are read again with every
    value checked (``segone.live.checked``), and as a last resort the person is shown from
    their identifiers alone. Logs which happened, never the values."""
    try:
        return view(published, doc, now, **kw)
    except Exception as exc:  # any odd value: read the checked documents
        from segone.live import checked

        log.error(
            "a stored profile document held an odd value (%s); segone repair fixes it",
            type(exc).__name__,
        )
        try:
            return view(checked.published(published), checked.person(doc), now, **kw)
        except Exception as again:  # a bug in view: still show the person
            log.error("a checked profile document could not be read (%s)", type(again).__name__)
            return view(None, None, now, **kw)


def _orders(
    p: dict[str, Any], pub: Mapping[str, Any], live: Mapping[str, Any], now: datetime
) -> None:
    n = live["n"]
    live_orders = n["orders"]
    orders = (pub["orders"] or 0) + live_orders
    p["orders"] = orders
    p["revenue"] = float(pub["revenue"] or 0.0) + live["revenue"]
    if not live_orders:
        p["recency_days"] = days(now, pub["last_order_at"])
        return
    times = [
        t
        for t in (
            pub["last_order_at"],
            pub["previous_order_at"],
            parse_ts(live["last_order_at"]),
            parse_ts(live["previous_order_at"]),
        )
        if t is not None
    ]
    times.sort(reverse=True)
    x, y = pub["first_order_at"], parse_ts(live["first_order_at"])
    first = y if x is None else x if y is None else min(x, y)
    last = times[0]
    prev = times[1] if len(times) > 1 else None
    p["first_order_at"], p["last_order_at"], p["previous_order_at"] = first, last, prev
    p["aov"] = p["revenue"] / orders
    share = pub["discount_order_share"] or 0.0
    p["discount_order_share"] = (share * (pub["orders"] or 0) + n["discounted_orders"]) / orders
    span = days(last, first) or 0.0
    p["mean_gap_days"] = span / (orders - 1) if orders >= 2 else None
    p["last_gap_days"] = days(last, prev)
    p["prior_gap_days"] = days(prev, first) / (orders - 2) if orders >= 3 and prev else None
    if n["lines"]:
        items = (pub["items"] or 0) + n["items"]
        full = (pub["full_price_item_share"] or 0.0) * (pub["items"] or 0) + n["full_price_items"]
        p["items"] = items
        p["full_price_item_share"] = full / items if items else None
        p["returned_items"] = pub["returned_items"] or 0
    cats = {*(pub["categories_bought"] or []), *live["categories_bought"]}
    p["categories_bought"] = sorted(cats) if cats else pub["categories_bought"]
    p["recency_days"] = days(now, last)


def _identifier_columns(p: dict[str, Any], identifiers: Sequence[str]) -> None:
    kinds = [i.split(":", 1)[0] for i in identifiers]

    def at_least(col: str, k: int) -> None:
        p[col] = max(p[col] or 0, k)

    at_least("identifiers", len(set(identifiers)))
    at_least("emails", kinds.count("email"))
    at_least("phones", kinds.count("phone"))
    at_least("devices_known", kinds.count("anonymous_id"))
    p["has_account"] = bool(p["has_account"]) or "user_id" in kinds
    p["has_loyalty_card"] = bool(p["has_loyalty_card"]) or "loyalty_id" in kinds
    p["has_social_handle"] = bool(p["has_social_handle"]) or "handle" in kinds


def _channels(p: Mapping[str, Any]) -> list[str]:
    """As the build: web, email, social, store, loyalty, crm, in that order."""
    out = []
    if (p["page_views"] or 0) > 0:
        out.append("web")
    if (p["email_delivered"] or 0) > 0:
        out.append("email")
    if bool(p["social_follower"]) or (p["social_posts"] or 0) > 0:
        out.append("social")
    if "store" in (p["channels_ordered"] or []):
        out.append("store")
    if p["has_loyalty_card"]:
        out.append("loyalty")
    if p["crm_stage"] is not None:
        out.append("crm")
    return out


# -- publishing -----------------------------------------------------------------------------------
def jsonable(v: Any) -> Any:
    """A profile value as JSON data: times as ISO strings, NaN as null, arrays as lists."""
    if v is None:
        return None
    if isinstance(v, datetime) or hasattr(v, "to_pydatetime"):
        t = parse_ts(v)
        return iso(t) if t is not None else None
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if hasattr(v, "tolist") and not isinstance(v, str):  # numpy scalars and arrays
        v = v.tolist()
    if isinstance(v, list | tuple):
        if v and all(isinstance(x, tuple) and len(x) == 2 for x in v):  # a map read by arrow
            return {str(k): jsonable(x) for k, x in v}
        return [jsonable(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, str | bool | int | float):
        return v
    return str(v)


def published_doc(
    row: Mapping[str, Any],
    cursor: int,
    *,
    events: Sequence[Mapping[str, Any]] | None = None,
    devices: Sequence[str] | None = None,
    searches: Mapping[str, int] | None = None,
    pricing_ts: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """The ``published`` document of one warehouse profile row, for the online store.

    ``cursor``: the highest online event ``seq`` the build read. The optional extras make the
    live view exact across builds: ``events`` (``{ts, event|name}`` of the person's recent
    events, for rules' ``event:`` conditions), ``devices`` (cookies seen on events),
    ``searches`` (search term -> count) and ``pricing_ts`` (times of pricing-page views in the
    30 days before the build).
    """
    doc: dict[str, Any] = {c: jsonable(row.get(c)) for c in PROFILE_COLUMNS if c in row}
    doc["_cursor"] = int(cursor)
    if events is not None:
        doc["_events"] = [
            {k: jsonable(e.get(k)) for k in ("ts", "event", "name") if e.get(k) is not None}
            for e in events
        ]
    if devices is not None:
        doc["_devices"] = sorted({str(d) for d in devices})
    if searches is not None:
        doc["_searches"] = {str(k): int(v) for k, v in searches.items()}
    if pricing_ts is not None:
        doc["_pricing_ts"] = [jsonable(t) for t in pricing_ts]
    return doc

"""The types of the Segment spec's fields, checked where a message comes in: a field whose value
is not of its type (a number that is not finite or out of range, an object where text belongs, a
string that is not a number, ...) is dropped from the message and reported, so nothing
downstream (live profiles, decisions, the warehouse) ever reads it.

Typed: the reserved properties of every ``track`` (``revenue``, ``value``, ``currency``), the
properties of the e-commerce spec's events (amounts, quantities, ids, ``products[]``), the
reserved properties of ``page``/``screen``, the reserved traits of ``identify``/``group``
(top level and ``context.traits``), and ``sentAt``. Everything else is kept as sent (the event
time is the caller's: ``segone.api.segment`` replaces one outside the accepted window).

``typed(msg)`` returns the dropped fields (path, why, the value as sent as JSON text); the caller
keeps the values with the stored message (under ``_dropped``) and tells the client which fields
it dropped and why (never the values: they may be personal data). A numeric string
(``"12.50"``) is a number, as the warehouse reads it; it is kept as sent.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

# the largest amount kept: every integer up to it is exact in a double (2 ** 53), and sums of
# millions of such amounts stay finite
MAX_AMOUNT = float(2**53)
MAX_QUANTITY = 1e9
# what Python's float() takes but the warehouse does not (``1_000``, ``inf``, ``0x1A``, ``nan``)
_NUMERIC = re.compile(r"[ \t]*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?[ \t]*\Z")

DROPPED_KEY = "_dropped"

# Segment's e-commerce spec (v2): the events whose properties are typed below
ECOMMERCE_EVENTS = frozenset(
    {
        "Products Searched",
        "Product List Viewed",
        "Product List Filtered",
        "Promotion Viewed",
        "Promotion Clicked",
        "Product Clicked",
        "Product Viewed",
        "Product Added",
        "Product Removed",
        "Cart Viewed",
        "Checkout Started",
        "Checkout Step Viewed",
        "Checkout Step Completed",
        "Payment Info Entered",
        "Order Updated",
        "Order Completed",
        "Order Refunded",
        "Order Cancelled",
        "Coupon Entered",
        "Coupon Applied",
        "Coupon Denied",
        "Coupon Removed",
        "Product Added to Wishlist",
        "Product Removed from Wishlist",
        "Wishlist Product Added to Cart",
        "Product Shared",
        "Cart Shared",
        "Product Reviewed",
    }
)


@dataclass(frozen=True)
class Dropped:
    """One field dropped from a message: where (``properties.products[0].price``), why, and the
    value as sent (JSON text)."""

    field: str
    reason: str
    sent: str


def _reason_number(v: Any, lo: float, hi: float) -> str | None:
    """Why ``v`` is not a number in [lo, hi] (None when it is one)."""
    if isinstance(v, bool) or v is None:
        return None if v is None else "is not a number"
    if isinstance(v, int | float):
        f = float(v) if not isinstance(v, int) or abs(v) < 2**1023 else math.inf
    elif isinstance(v, str):
        try:
            f = float(v)
        except ValueError:
            return "is not a number"
        if math.isfinite(f) and not _NUMERIC.match(v):  # 1_000, 0x1A: not to the warehouse
            return "is not a number"
    else:
        return "is not a number"
    if not math.isfinite(f):
        return "is not a finite number"
    if not lo <= f <= hi:
        return f"is out of range ({lo:g} to {hi:g})"
    return None


def amount(v: Any) -> str | None:
    t = type(v)
    if (t is float or t is int) and -MAX_AMOUNT <= v <= MAX_AMOUNT:  # (the common case)
        return None
    return _reason_number(v, -MAX_AMOUNT, MAX_AMOUNT)


def quantity(v: Any) -> str | None:
    t = type(v)
    if (t is int or t is float) and 0 <= v <= MAX_QUANTITY:
        return None
    return _reason_number(v, 0.0, MAX_QUANTITY)


_TEXT_TYPES = frozenset((str, int, float, type(None)))


def text(v: Any) -> str | None:
    """Text (an id may be a number, written as text later); not an object, list or boolean."""
    if type(v) in _TEXT_TYPES or isinstance(v, str):
        return None
    return "must be a string"


def date(v: Any) -> str | None:
    if v is None:
        return None
    if not isinstance(v, str):
        return "must be an ISO-8601 date string"
    try:
        datetime.fromisoformat(v.strip())
    except ValueError:
        return "is not an ISO-8601 date"
    return None


def obj(v: Any) -> str | None:
    return None if v is None or isinstance(v, dict) else "must be an object"


def text_list(v: Any) -> str | None:
    if v is None or (isinstance(v, list) and all(isinstance(x, str) for x in v)):
        return None
    return "must be a list of strings"


Check = Callable[[Any], str | None]

PRODUCT: dict[str, Check] = {
    "product_id": text,
    "sku": text,
    "category": text,
    "name": text,
    "brand": text,
    "variant": text,
    "coupon": text,
    "url": text,
    "image_url": text,
    "currency": text,
    "price": amount,
    "value": amount,
    "discount": amount,
    "quantity": quantity,
    "position": amount,
}
ECOMMERCE: dict[str, Check] = {
    **PRODUCT,
    "order_id": text,
    "checkout_id": text,
    "cart_id": text,
    "list_id": text,
    "promotion_id": text,
    "creative": text,
    "affiliation": text,
    "query": text,
    "shipping_method": text,
    "payment_method": text,
    "coupon_id": text,
    "coupon_name": text,
    "wishlist_id": text,
    "wishlist_name": text,
    "review_id": text,
    "review_body": text,
    "share_via": text,
    "revenue": amount,
    "total": amount,
    "subtotal": amount,
    "tax": amount,
    "shipping": amount,
    "step": amount,
    "rating": amount,
}
TRACK: dict[str, Check] = {"revenue": amount, "value": amount, "currency": text}
PAGE: dict[str, Check] = {
    "name": text,
    "path": text,
    "referrer": text,
    "search": text,
    "title": text,
    "url": text,
    "category": text,
    "keywords": text_list,
}
ADDRESS: dict[str, Check] = {
    k: text for k in ("city", "country", "postalCode", "postal_code", "state", "street")
}
COMPANY: dict[str, Check] = {
    "name": text,
    "id": text,
    "industry": text,
    "plan": text,
    "employee_count": amount,
}
TRAITS: dict[str, Check] = {
    **{
        k: text
        for k in (
            "email",
            "firstName",
            "first_name",
            "lastName",
            "last_name",
            "name",
            "phone",
            "username",
            "website",
            "title",
            "gender",
            "description",
            "id",
            "avatar",
            "industry",
            "plan",
        )
    },
    "age": amount,
    "employees": amount,
    "birthday": date,
    "createdAt": date,
    "created_at": date,
    "address": obj,
    "company": obj,
}
_NESTED: dict[str, dict[str, Check]] = {"address": ADDRESS, "company": COMPANY}


def in_window(t: datetime, received: datetime, earliest: datetime, future: timedelta) -> bool:
    """Whether an event time is taken as sent: from ``earliest`` to ``future`` after the time
    it was received."""
    try:
        latest = received + future
    except OverflowError:  # a window configured past the calendar
        return earliest <= t
    return earliest <= t <= latest


def _as_sent(v: Any) -> str:
    try:
        return orjson.dumps(v).decode()
    except (TypeError, orjson.JSONEncodeError):  # pragma: no cover - parsed JSON dumps again
        return "(not kept)"


def _check(
    doc: dict[str, Any], checks: Mapping[str, Check], where: str, dropped: list[Dropped]
) -> dict[str, Any]:
    """``doc`` without its fields of the wrong type (a copy only when one is dropped)."""
    out = doc
    nested = checks is TRAITS
    for key, v in doc.items():
        check = checks.get(key)
        if check is None:
            continue
        t = type(v)  # the common cases without a call: text, and amounts in range
        if check is text and (t is str or t is int or t is float):
            continue
        if check is amount and (t is int or t is float) and -MAX_AMOUNT <= v <= MAX_AMOUNT:
            continue
        reason = check(v)
        if reason is None:
            sub = _NESTED.get(key) if nested else None
            if sub is not None and isinstance(v, dict):
                inner = _check(v, sub, f"{where}{key}.", dropped)
                if inner is not v:
                    if out is doc:
                        out = dict(doc)
                    out[key] = inner
            continue
        if out is doc:
            out = dict(doc)
        del out[key]
        dropped.append(Dropped(f"{where}{key}", reason, _as_sent(v)))
    return out


def _products(props: dict[str, Any], dropped: list[Dropped]) -> dict[str, Any]:
    products = props.get("products")
    if products is None:
        return props
    if not isinstance(products, list):
        out = dict(props)
        del out["products"]
        dropped.append(
            Dropped("properties.products", "must be a list of objects", _as_sent(products))
        )
        return out
    kept: list[Any] = []
    changed = False
    for i, p in enumerate(products):
        if type(p) is not dict:
            where = f"properties.products[{i}]"
            dropped.append(Dropped(where, "must be an object", _as_sent(p)))
            changed = True
            continue
        mine: list[Dropped] = []
        q = _check(p, PRODUCT, "", mine)
        if q is not p:  # (the path is spelt out only for what was dropped)
            changed = True
            dropped += [
                Dropped(f"properties.products[{i}].{d.field}", d.reason, d.sent) for d in mine
            ]
        kept.append(q)
    if not changed:
        return props
    return {**props, "products": kept}


def typed(msg: dict[str, Any]) -> list[Dropped]:
    """Drop the fields of ``msg`` (a normalized message: ``type``, ``properties`` and ``traits``
    objects) whose values are not of their spec type, in place (the objects changed are
    copied, never changed); returns those dropped (none for a clean message)."""
    dropped: list[Dropped] = []
    if "sentAt" in msg and (why := date(msg["sentAt"])) is not None:  # the warehouse's sent_at
        dropped.append(Dropped("sentAt", why, _as_sent(msg.pop("sentAt"))))
    kind = msg.get("type")
    props = msg.get("properties")
    if kind == "track" and props:
        event = msg.get("event")
        spec = ECOMMERCE if event in ECOMMERCE_EVENTS else TRACK
        props = _check(props, spec, "properties.", dropped)
        if spec is ECOMMERCE:
            props = _products(props, dropped)
        msg["properties"] = props
    elif kind in ("page", "screen") and props:
        msg["properties"] = _check(props, PAGE, "properties.", dropped)
    traits = msg.get("traits")
    if traits:
        msg["traits"] = _check(traits, TRAITS, "traits.", dropped)
    ctx = msg.get("context")
    if isinstance(ctx, dict):
        inner = ctx.get("traits")
        if isinstance(inner, dict) and inner:
            checked = _check(inner, TRAITS, "context.traits.", dropped)
            if checked is not inner:
                msg["context"] = {**ctx, "traits": checked}
    return dropped

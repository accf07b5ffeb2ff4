"""Built-in behavioural sub-segments, each a rule of the rule language with its thresholds in
``[segments]`` of segone.toml. A project segment with the same name replaces the built-in one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import ibis.expr.datatypes as dt

from segone.segments.rules import Catalogue, Segment, rule_from_obj


@dataclass(frozen=True)
class BuiltinSettings:
    vip_share: float = 0.05  # top share of buyers by revenue
    discount_min_orders: int = 3
    discount_order_share: float = 0.6
    full_price_share_max: float = 0.4
    charmed_days: float = 30.0
    loyal_min_orders: int = 5
    window_min_views: int = 10
    pricing_min_views_30d: int = 1
    email_min_delivered: int = 5
    email_engaged_open_rate: float = 0.3
    email_dormant_open_rate: float = 0.05
    advocate_sentiment: float = 0.3
    detractor_sentiment: float = -0.3


def definitions(s: BuiltinSettings) -> list[tuple[str, str, Any]]:
    """(name, description, rule) of every built-in segment."""
    return [
        (
            "vip",
            f"Top {s.vip_share:.0%} of buyers by revenue",
            {"revenue_percentile": {"gte": 1 - s.vip_share}},
        ),
        (
            "discount_abusers",
            "Cherry pickers: buy mostly on promotion, rarely at full price",
            {
                "all": [
                    {"orders": {"gte": s.discount_min_orders}},
                    {"discount_order_share": {"gte": s.discount_order_share}},
                    {"full_price_item_share": {"lte": s.full_price_share_max}},
                ]
            },
        ),
        (
            "charmed",
            f"Bought again within {s.charmed_days:g} days of a good experience "
            "(a positive review, post or ticket, or an order kept)",
            {"rebought_after_good_days": {"lte": s.charmed_days}},
        ),
        (
            "loyal",
            f"At least {s.loyal_min_orders} orders and still buying on their usual rhythm",
            {
                "all": [
                    {"orders": {"gte": s.loyal_min_orders}},
                    {"lifecycle_stage": {"in": ["active", "new"]}},
                ]
            },
        ),
        (
            "window_shoppers",
            f"At least {s.window_min_views} page views, never bought",
            {"all": [{"page_views": {"gte": s.window_min_views}}, {"orders": 0}]},
        ),
        (
            "pricing_page_visitors",
            "Visited the pricing page in the last 30 days",
            {"pricing_views_30d": {"gte": s.pricing_min_views_30d}},
        ),
        (
            "email_engaged",
            f"Open at least {s.email_engaged_open_rate:.0%} of our e-mails",
            {
                "all": [
                    {"email_delivered": {"gte": s.email_min_delivered}},
                    {"email_open_rate": {"gte": s.email_engaged_open_rate}},
                ]
            },
        ),
        (
            "email_dormant",
            f"Open under {s.email_dormant_open_rate:.0%} of our e-mails",
            {
                "all": [
                    {"email_delivered": {"gte": s.email_min_delivered}},
                    {"email_open_rate": {"lt": s.email_dormant_open_rate}},
                ]
            },
        ),
        (
            "social_advocates",
            "Follow or post about us, and speak well of us",
            {
                "all": [
                    {"any": [{"social_follower": True}, {"social_posts": {"gte": 1}}]},
                    {"avg_sentiment": {"gte": s.advocate_sentiment}},
                ]
            },
        ),
        (
            "detractors",
            "Speak badly of us (posts, reviews, tickets)",
            {"avg_sentiment": {"lte": s.detractor_sentiment}},
        ),
    ]


def builtin_catalogue(
    attributes: Mapping[str, dt.DataType],
    settings: BuiltinSettings | None = None,
    skip: set[str] | None = None,
) -> Catalogue:
    cat = Catalogue()
    for name, desc, obj in definitions(settings or BuiltinSettings()):
        if skip and name in skip:
            continue
        cat.add(Segment(name, rule_from_obj(obj, attributes, name), desc, "built-in"))
    return cat

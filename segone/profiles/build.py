"""``segone build``: identities, then one profile per customer, as of now or any past date."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import ibis
import ibis.expr.types as ir

from segone.identity import IdentityResult, IdentitySettings, resolve
from segone.identity.graph import known_by
from segone.profiles import features as F
from segone.profiles.sentiment import score_interactions
from segone.schema import TS
from segone.segments.lifecycle import LifecycleSettings, lifecycle
from segone.store.base import Warehouse


@dataclass
class BuildResult:
    as_of: datetime
    identity: IdentityResult
    profiles: int

    def summary(self) -> str:
        return (
            f"as of {self.as_of:%Y-%m-%d %H:%M} UTC: {self.identity.summary()}; "
            f"{self.profiles:,} profiles"
        )


def profiles_expr(
    wh: Warehouse,
    as_of: ir.TimestampValue,
    half_life_days: float = 90.0,
    country_code: str = "1",
    stages: LifecycleSettings | None = None,
) -> ibis.Table:
    """The single customer view: one row per customer, every feature computed up to ``as_of``."""
    rc = wh.table("record_customers")
    orders = wh.table("orders")
    orders = F.of(orders.filter(orders.ts <= as_of), rc, "orders", "order_id")
    lines = wh.table("order_lines")
    events = wh.table("events")
    events = F.of(events.filter(events.timestamp <= as_of), rc, "events", "message_id")
    it = wh.table("interactions")
    it = F.of(it.filter(it.ts <= as_of), rc, "interactions", "interaction_id")
    cust = wh.table("customers")
    cust = cust.mutate(_rk=cust.source + ":" + cust.source_id)
    cust = F.of(cust.filter(known_by(cust, as_of)), rc, "customers", "_rk").drop("_rk")

    base = F.identifier_features(wh.table("customer_map"))
    enrich = wh.table("enrichments")
    parts = [
        # reference data without a date of their own: every as-of build uses what is loaded
        F.enrichment_features(enrich, wh.table("customer_map"), cust, country_code),
        F.order_features(orders, lines, as_of, half_life_days),
        F.charm_features(it, wh.table("interaction_sentiment"), orders, lines),
        F.event_features(events, as_of),
        F.interaction_features(it, wh.table("interaction_sentiment")),
        F.crm_features(cust),
    ]
    p = base
    for part in parts:
        p = p.left_join(part, "customer_id").drop("customer_id_right")
    p = p.mutate(
        orders=p.orders.fill_null(0),
        revenue=p.revenue.fill_null(0.0),
        first_seen=p.first_seen_id,
        last_seen=p.last_seen_id,
        tenure_days=F._days(as_of, p.first_seen_id),
        days_since_seen=F._days(as_of, p.last_seen_id),
        social_follower=p.social_follower.fill_null(False),
        pricing_views_30d=p.pricing_views_30d.fill_null(0),
        page_views=p.page_views.fill_null(0),
    )
    channels = ibis.array(
        [
            ibis.ifelse(p.page_views > 0, "web", ibis.null("string")),
            ibis.ifelse(p.email_delivered.fill_null(0) > 0, "email", ibis.null("string")),
            ibis.ifelse(
                p.social_follower | (p.social_posts.fill_null(0) > 0), "social", ibis.null("string")
            ),
            ibis.ifelse(
                p.channels_ordered.contains("store").fill_null(False), "store", ibis.null("string")
            ),
            ibis.ifelse(p.has_loyalty_card, "loyalty", ibis.null("string")),
            ibis.ifelse(p.crm_stage.notnull(), "crm", ibis.null("string")),
        ]
    )
    p = p.mutate(channels=channels.filter(lambda x: x.notnull()))
    p = p.drop("first_seen_id", "last_seen_id")
    buyers = p.orders > 0
    p = p.mutate(
        revenue_percentile=ibis.ifelse(
            buyers,
            ibis.percent_rank().over(group_by=buyers, order_by=p.revenue),
            ibis.null("float64"),
        )
    )
    rfm = F.rfm_scores(p)
    p = p.left_join(rfm, "customer_id").drop("customer_id_right")
    p = lifecycle(p, stages or LifecycleSettings(), as_of)
    return p.mutate(as_of=as_of)


def build(
    wh: Warehouse,
    *,
    as_of: datetime | None = None,
    identity: IdentitySettings | None = None,
    half_life_days: float = 90.0,
    stages: LifecycleSettings | None = None,
) -> BuildResult:
    """Resolve identities and rebuild ``profiles`` from the raw tables (up to ``as_of``)."""
    when = as_of or datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    ident = resolve(wh, identity, as_of=as_of)
    score_interactions(wh)
    cutoff = ibis.literal(when, type=TS)
    with wh.transaction():
        wh.replace(
            "profiles",
            profiles_expr(
                wh,
                cutoff,
                half_life_days,
                (identity or IdentitySettings()).default_country_code,
                stages,
            ),
        )
    return BuildResult(when, ident, wh.count("profiles"))

"""The single customer view's features: one row per customer, computed from the raw tables up
to an as-of date.

Pure Ibis over the warehouse's tables: nothing here fits a model or reads a segment. The batch
pipeline (``segone.pipeline.build.profiles_expr``) joins the model scores to these features and
judges each person's lifecycle stage on the result.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from segone.exprs import of
from segone.identity.graph import known_by
from segone.profiles import features as F
from segone.store.base import Warehouse


def customer_features(
    wh: Warehouse,
    as_of: ir.TimestampValue,
    country_code: str = "1",
) -> ibis.Table:
    """Every profile feature of every customer, up to ``as_of`` (no scores, no stage)."""
    rc = wh.table("record_customers")
    orders = wh.table("orders")
    orders = of(orders.filter(orders.ts <= as_of), rc, "orders", "order_id")
    lines = wh.table("order_lines")
    events = wh.table("events")
    events = of(events.filter(events.timestamp <= as_of), rc, "events", "message_id")
    it = wh.table("interactions")
    it = of(it.filter(it.ts <= as_of), rc, "interactions", "interaction_id")
    cust = wh.table("customers")
    cust = cust.mutate(_rk=cust.source + ":" + cust.source_id)
    cust = of(cust.filter(known_by(cust, as_of)), rc, "customers", "_rk").drop("_rk")

    base = F.identifier_features(wh.table("customer_map"), as_of)
    enrich = wh.table("enrichments")
    parts = [
        # reference data without a date of their own: every as-of build uses what is loaded
        F.enrichment_features(enrich, wh.table("customer_map"), cust, country_code),
        F.order_features(orders, lines, as_of),
        F.charm_features(it, wh.table("interaction_sentiment"), orders, lines),
        F.event_features(events, as_of),
        F.interaction_features(it, wh.table("interaction_sentiment")),
        F.crm_features(cust),
    ]
    p = base
    for part in parts:
        p = p.left_join(part, "customer_id").drop("customer_id_right")
    # the latest dated record up to as_of (DuckDB's greatest skips nulls)
    last_seen = ibis.greatest(
        p.last_seen_id, p.last_order_at, p.last_event_at, p.last_interaction_at
    )
    p = p.mutate(
        orders=p.orders.fill_null(0),
        revenue=p.revenue.fill_null(0.0),
        first_seen=p.first_seen_id,
        last_seen=last_seen,
        tenure_days=F._days(as_of, p.first_seen_id),
        days_since_seen=F._days(as_of, last_seen),
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
    return p.left_join(rfm, "customer_id").drop("customer_id_right")

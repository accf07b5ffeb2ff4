"""Profile features as pure Ibis expressions: each function takes tables and returns a table
keyed by ``customer_id``. Nothing here touches a connection, so the same features run on any
engine and for any as-of date (the caller filters the inputs to records up to that date).
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from segone.exprs import of as of  # re-exported: features are computed per customer

DAY_SECONDS = 86_400.0


def _days(later: ir.TimestampValue, earlier: ir.TimestampValue) -> ir.FloatingValue:
    return (later.epoch_seconds() - earlier.epoch_seconds()) / DAY_SECONDS


def sorted_collect(t: ibis.Table, by: str, fields: list[ir.Value]) -> ibis.Table:
    """``by`` and ``_a``: per group, the array of structs ``(f0, f1, ...)`` of ``fields``, sorted
    ascending field by field (negate a number to sort it descending).

    The portable form of ``collect(order_by=...)``: Spark has no ordered aggregate, but both
    engines sort an array of structs the same way, and the order then does not depend on how
    the engine happened to read the rows.
    """
    rows = t.mutate(_s=ibis.struct({f"f{i}": f for i, f in enumerate(fields)}))
    out = rows.group_by(by).aggregate(_a=rows._s.collect())
    return out.mutate(_a=out._a.sort())


def order_features(orders: ibis.Table, lines: ibis.Table, as_of: ir.TimestampValue) -> ibis.Table:
    """Orders, revenue, AOV, recency, discount use, full-price share, returns, categories bought
    (the category affinity is the preference model's: ``affinity_map``)."""
    o = orders.filter(orders.status != "cancelled")
    discounted = (o.discount.fill_null(0) > 0) | o.coupon.notnull()
    # the order before the latest one: how long the person had been away when they came back
    ranked = o.mutate(_k=ibis.row_number().over(group_by="customer_id", order_by=ibis.desc(o.ts)))
    prev = ranked.filter(ranked._k == 1).select("customer_id", previous_order_at="ts")
    per = o.group_by("customer_id").aggregate(
        orders=o.count(),
        revenue=o.amount.sum(),
        first_order_at=o.ts.min(),
        last_order_at=o.ts.max(),
        discount_order_share=discounted.cast("float64").mean(),
        channels_ordered=o.channel.collect(distinct=True).sort(),
    )
    per = per.left_join(prev, "customer_id").drop("customer_id_right")
    span = _days(per.last_order_at, per.first_order_at)
    per = per.mutate(
        aov=per.revenue / per.orders,
        recency_days=_days(as_of, per.last_order_at),
        # the person's own purchase cadence: mean days between orders, and the same before the
        # latest order (null when there are too few orders to tell)
        mean_gap_days=ibis.ifelse(per.orders >= 2, span / (per.orders - 1), ibis.null("float64")),
        last_gap_days=_days(per.last_order_at, per.previous_order_at),
        prior_gap_days=ibis.ifelse(
            per.orders >= 3,
            _days(per.previous_order_at, per.first_order_at) / (per.orders - 2),
            ibis.null("float64"),
        ),
    )
    ln = lines.join(o.select("order_id", "customer_id", "ts"), "order_id")
    by_line = ln.group_by("customer_id").aggregate(
        items=ln.quantity.sum(),
        full_price_item_share=(
            ln.quantity * (ln.line_discount.fill_null(0) == 0).cast("int64")
        ).sum()
        / ln.quantity.sum(),
        returned_items=ln.returned_quantity.fill_null(0).sum(),
        categories_bought=ln.category.collect(distinct=True).sort(),
    )
    return per.left_join(by_line, "customer_id").drop("customer_id_right")


def affinity_map(affinity: ibis.Table) -> ibis.Table:
    """``customer_id, category_affinity, top_category`` from the rows of the
    ``category_affinity`` table (``segone.models.affinity``: the preference model's probability
    that the person's next purchase is in each category): the map of those numbers, unchanged,
    and the category with the largest one (ties by category)."""
    a = affinity.filter(affinity.category.notnull())
    # an array sorted after collection rather than an ordered aggregate (Spark has none)
    ranked = sorted_collect(a, "customer_id", [-a.affinity, a.category])
    keys = ranked._a.map(lambda s: s["f1"])
    return ranked.select(
        "customer_id",
        category_affinity=ibis.map(keys, ranked._a.map(lambda s: -s["f0"])),
        top_category=keys[0],
    )


def event_features(events: ibis.Table, as_of: ir.TimestampValue) -> ibis.Table:
    """Web visits, pricing-page visits, searches and e-mail engagement per customer."""
    e = events
    props = e.properties
    path = props["path"].unwrap_as("string")
    is_page = e.type.isin(["page", "screen"])
    is_pricing = is_page & ((e.name.lower() == "pricing") | path.startswith("/pricing"))
    recent = e.timestamp >= as_of - ibis.interval(days=30)
    ev = e.event
    per = e.group_by("customer_id").aggregate(
        events=e.count(),
        first_event_at=e.timestamp.min(),
        last_event_at=e.timestamp.max(),
        page_views=is_page.cast("int64").sum(),
        pricing_views=is_pricing.cast("int64").sum(),
        pricing_views_30d=(is_pricing & recent).cast("int64").sum(),
        email_delivered=(ev == "Email Delivered").cast("int64").sum(),
        email_opened=(ev == "Email Opened").cast("int64").sum(),
        email_clicked=(ev == "Email Link Clicked").cast("int64").sum(),
        devices=e.anonymous_id.nunique(),
    )
    per = per.mutate(
        email_open_rate=ibis.ifelse(
            per.email_delivered > 0, per.email_opened / per.email_delivered, ibis.null("float64")
        ),
        email_click_rate=ibis.ifelse(
            per.email_delivered > 0, per.email_clicked / per.email_delivered, ibis.null("float64")
        ),
    )
    s = e.filter(ev == "Products Searched")
    s = s.mutate(term=s.properties["query"].unwrap_as("string").lower().strip())
    s = s.filter(s.term.notnull() & (s.term != ""))
    terms = s.group_by(["customer_id", "term"]).aggregate(n=s.count())
    terms = terms.mutate(
        _r=ibis.row_number().over(group_by="customer_id", order_by=[ibis.desc("n"), "term"])
    )
    top = terms.filter(terms._r < 3)
    top = sorted_collect(top.filter(top.term.notnull()), "customer_id", [-top.n, top.term])
    top = top.select("customer_id", top_search_terms=top._a.map(lambda s: s["f1"]))
    return per.left_join(top, "customer_id").drop("customer_id_right")


def interaction_features(interactions: ibis.Table, sentiment: ibis.Table) -> ibis.Table:
    """Social follower flag, posts, reviews and the average sentiment of what they wrote."""
    it = interactions.left_join(sentiment, "interaction_id").drop("interaction_id_right")
    return it.group_by("customer_id").aggregate(
        social_follower=(it.kind == "follow").any(),
        social_posts=(it.kind.isin(["post", "comment"])).cast("int64").sum(),
        reviews=(it.kind == "review").cast("int64").sum(),
        avg_rating=ibis.ifelse(it.kind == "review", it.rating, ibis.null("int64")).mean(),
        support_tickets=(it.kind == "ticket").cast("int64").sum(),
        avg_sentiment=it.sentiment.mean(),
        texts=it.sentiment.count(),
        last_interaction_at=it.ts.max(),
    )


def crm_features(customers: ibis.Table) -> ibis.Table:
    """Latest known CRM stage, consent per channel and name, across a person's source records."""
    c = customers.mutate(
        _t=ibis.coalesce(customers.updated_at, customers.created_at, customers.loaded_at)
    )

    def latest(col: str) -> ir.Value:
        return c[col].argmax(ibis.ifelse(c[col].notnull(), c._t, ibis.null(c._t.type())))

    return c.group_by("customer_id").aggregate(
        crm_stage=latest("crm_stage"),
        consent_email=latest("consent_email"),
        consent_sms=latest("consent_sms"),
        consent_push=latest("consent_push"),
        first_name=latest("first_name"),
        last_name=latest("last_name"),
        city=latest("city"),
        postcode=latest("postcode"),
        source_records=(c.source + ":" + c.source_id).nunique(),
        sources=c.source.collect(distinct=True).sort(),
        first_record_at=ibis.coalesce(c.created_at, c.updated_at, c.loaded_at).min(),
    )


def identifier_features(customer_map: ibis.Table, as_of: ir.TimestampValue) -> ibis.Table:
    """How many identifiers of each type a person had by ``as_of``, and when they were seen.

    ``customer_map`` may hold identity resolved with later data (snapshots, training rows of
    the churn model): identifiers first seen after ``as_of`` are left out, and an identifier
    also seen later counts as last seen when it was first seen (the profile then takes the
    latest dated record up to ``as_of``), so nothing after ``as_of`` leaks into a profile.
    """
    # identifiers of undated records (a CRM export without dates) count whenever
    m = customer_map.filter(customer_map.first_seen.isnull() | (customer_map.first_seen <= as_of))
    m = m.mutate(last_seen=ibis.ifelse(m.last_seen <= as_of, m.last_seen, m.first_seen))
    out = m.group_by("customer_id").aggregate(
        identifiers=m.count(),
        emails=(m.id_type == "email").cast("int64").sum(),
        phones=(m.id_type == "phone").cast("int64").sum(),
        devices_known=(m.id_type == "anonymous_id").cast("int64").sum(),
        has_account=(m.id_type == "user_id").any(),
        has_loyalty_card=(m.id_type == "loyalty_id").any(),
        has_social_handle=(m.id_type == "handle").any(),
        first_seen_id=m.first_seen.min(),
        last_seen_id=m.last_seen.max(),
    )
    return out


def rfm_scores(profiles: ibis.Table) -> ibis.Table:
    """R, F and M quintile scores (5 = best) among customers who ordered, and the RFM cell."""
    buyers = profiles.filter(profiles.orders > 0)
    scored = buyers.select(
        "customer_id",
        # customer_id breaks ties, so equal customers get the same score in every build
        r_score=(
            ibis.ntile(5).over(order_by=[ibis.desc(buyers.recency_days), buyers.customer_id]) + 1
        ).cast("int8"),
        f_score=(ibis.ntile(5).over(order_by=[buyers.orders, buyers.customer_id]) + 1).cast("int8"),
        m_score=(ibis.ntile(5).over(order_by=[buyers.revenue, buyers.customer_id]) + 1).cast(
            "int8"
        ),
    )
    return scored.mutate(
        rfm_cell=scored.r_score.cast("string")
        + scored.f_score.cast("string")
        + scored.m_score.cast("string")
    )


def enrichment_features(
    enrich: ibis.Table, customer_map: ibis.Table, customers: ibis.Table, country_code: str
) -> ibis.Table:
    """Third-party attributes joined on by e-mail, phone, company domain or postcode.

    ``enrichment`` maps each source to its attributes (the latest loaded row that matched).
    """
    from segone.identity import normalize as norm

    e = enrich.mutate(
        _email=norm.email(enrich.email),
        _phone=norm.phone(enrich.phone, country_code),
        _domain=enrich.domain.lower()
        .strip()
        .re_replace(r"^(https?://)?(www\.)?", "")
        .re_replace(r"/.*$", ""),
        _post=enrich.postcode.strip(),
    )
    emails = customer_map.filter(customer_map.id_type == "email")
    emails = emails.select("customer_id", value=emails.node.substr(6))
    phones = customer_map.filter(customer_map.id_type == "phone")
    phones = phones.select("customer_id", value=phones.node.substr(6))
    domains = emails.select("customer_id", value=emails.value.re_extract(r"@(.+)$", 1))
    posts = customers.filter(customers.postcode.notnull()).select(
        "customer_id", value=customers.postcode.strip()
    )
    cols = ["customer_id", "source", "extra", "loaded_at"]
    parts = []
    for key, people in (
        ("_email", emails),
        ("_phone", phones),
        ("_domain", domains),
        ("_post", posts),
    ):
        hit = e.filter(e[key].notnull()).join(people.distinct(), e[key] == people.value)
        parts.append(hit.select(*cols))
    m = ibis.union(*parts, distinct=False)
    m = m.mutate(
        _r=ibis.row_number().over(
            group_by=["customer_id", "source"], order_by=ibis.desc(m.loaded_at)
        )
    )
    m = m.filter(m._r == 0)
    m = m.filter(m.source.notnull())  # map keys cannot be null
    agg = sorted_collect(m, "customer_id", [m.source, m.extra.cast("string")])
    return agg.select(
        "customer_id",
        enrichment=ibis.map(agg._a.map(lambda s: s["f0"]), agg._a.map(lambda s: s["f1"])),
    )


def charm_features(
    interactions: ibis.Table, sentiment: ibis.Table, orders: ibis.Table, lines: ibis.Table
) -> ibis.Table:
    """How soon a person bought again after a good experience: a positive review, post or
    support ticket, or an order delivered and kept (no line returned)."""
    it = interactions.join(sentiment, "interaction_id")
    good_text = it.filter(it.sentiment >= 0.5).select("customer_id", at=it.ts)
    o = orders.filter(orders.status != "cancelled")
    returned = lines.filter(lines.returned_quantity.fill_null(0) > 0).select("order_id").distinct()
    kept = o.anti_join(returned, "order_id").select("customer_id", at=o.ts)
    good = ibis.union(good_text, kept, distinct=False)
    nxt = o.select("customer_id", next_at=o.ts)
    pairs = good.join(nxt, "customer_id")
    pairs = pairs.filter(pairs.next_at > pairs.at)
    first = pairs.group_by(["customer_id", "at"]).aggregate(next_at=pairs.next_at.min())
    gap = (first.next_at.epoch_seconds() - first.at.epoch_seconds()) / DAY_SECONDS
    return first.group_by("customer_id").aggregate(rebought_after_good_days=gap.min())

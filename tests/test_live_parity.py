"""The live layer means what the warehouse means: on a generated, built warehouse, a profile
replayed from a person's events, the Python lifecycle stage and in-memory segment membership
equal the batch's own results."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import ibis
import numpy as np
import pandas as pd
import pytest

from segone.config import IngestSettings
from segone.datasets import SAMPLE_FILES, generate_sample
from segone.identity import IdentitySettings
from segone.ingest import ingest_file
from segone.live import profile
from segone.live.profile import PROFILE_TYPES, apply_event, published_doc, view
from segone.live.realtime import live_catalogue, members
from segone.live.stage import expected_gap_days, lifecycle_stage
from segone.models.settings import ModelSettings
from segone.pipeline.backfill import record_snapshot
from segone.pipeline.build import build
from segone.segments.batch import customer_events
from segone.segments.lifecycle import LifecycleSettings, lifecycle
from segone.store.duckdb import DuckDBWarehouse

AS_OF = datetime(2024, 12, 31, 23, 59, tzinfo=UTC)
EXAMPLES = Path(str(resources.files("segone.segments").joinpath("examples/examples.yaml")))

EVENT_COLUMNS = (
    "events",
    "first_event_at",
    "last_event_at",
    "page_views",
    "pricing_views",
    "pricing_views_30d",
    "email_delivered",
    "email_opened",
    "email_clicked",
    "devices",
    "email_open_rate",
    "email_click_rate",
    "top_search_terms",
)
ORDER_COLUMNS = (
    "orders",
    "revenue",
    "first_order_at",
    "last_order_at",
    "previous_order_at",
    "aov",
    "recency_days",
    "mean_gap_days",
    "last_gap_days",
    "prior_gap_days",
    "items",
    "full_price_item_share",
    "discount_order_share",
    "categories_bought",
)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("live")
    generate_sample(out, customers=400, seed=5)
    wh = DuckDBWarehouse(out / "wh.duckdb")
    settings = IngestSettings(
        mapping={"customers_loyalty": {"source_id": "card_number", "loyalty_id": "card_number"}}
    )
    for kind, name in SAMPLE_FILES:
        ingest_file(wh, kind, out / "data" / name, settings=settings)
    build(
        wh,
        as_of=AS_OF,
        identity=IdentitySettings(probabilistic=False),
        models=ModelSettings(enabled=False),
    )
    rows = wh.execute(wh.table("profiles")).to_dict("records")
    yield wh, {r["customer_id"]: r for r in rows}
    wh.close()


def _na(v):
    if v is None or v is pd.NaT:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, np.ndarray):
        return list(v)
    if isinstance(v, pd.Timestamp):
        return v.to_pydatetime()
    return v


def _same(col, live, batch):
    live, batch = _na(live), _na(batch)
    if live is None or batch is None:
        return live is None and batch is None
    if col == "categories_bought":
        return sorted(live) == sorted(batch)
    if isinstance(batch, float):
        return math.isclose(live, batch, rel_tol=1e-9, abs_tol=1e-6)
    if isinstance(batch, list):
        return list(live) == batch
    return live == batch


def _messages(wh):
    """Each customer's events as Segment messages, as the server would receive them."""
    ev = wh.table("events")
    rc = wh.table("record_customers")
    rc = rc.filter(rc.record_table == "events")
    j = ev.join(rc, ev.message_id == rc.record_key)
    j = j.filter(j.timestamp <= AS_OF).order_by(["timestamp", "message_id"])
    cols = ["customer_id", "message_id", "type", "event", "name", "user_id", "anonymous_id"]
    df = wh.execute(
        j.select(
            *cols,
            "timestamp",
            traits=j.traits.cast("string"),
            properties=j.properties.cast("string"),
        )
    )
    out: dict[str, list[dict]] = {}
    for r in df.to_dict("records"):
        msg = {
            "messageId": r["message_id"],
            "type": r["type"],
            "timestamp": r["timestamp"].isoformat(),
            "properties": json.loads(r["properties"]) if isinstance(r["properties"], str) else {},
            "traits": json.loads(r["traits"]) if isinstance(r["traits"], str) else {},
        }
        for key, col in (
            ("event", "event"),
            ("name", "name"),
            ("userId", "user_id"),
            ("anonymousId", "anonymous_id"),
        ):
            if isinstance(r[col], str):
                msg[key] = r[col]
        out.setdefault(r["customer_id"], []).append(msg)
    return out


def _replay(msgs):
    doc = None
    for seq, m in enumerate(msgs, 1):
        doc = apply_event(doc, m, seq, AS_OF)
    return doc


def test_profile_columns_are_the_warehouse_columns(built):
    wh, _ = built
    assert {k: str(v) for k, v in wh.table("profiles").schema().items()} == PROFILE_TYPES


def test_event_columns_replayed_live_equal_the_batch(built):
    wh, profiles = built
    by_customer = _messages(wh)
    assert len(by_customer) > 200
    checked = 0
    for cid, msgs in by_customer.items():
        live = view(None, _replay(msgs), AS_OF)
        batch = profiles[cid]
        bad = [c for c in EVENT_COLUMNS if not _same(c, live[c], batch[c])]
        assert not bad, (cid, {c: (live[c], batch[c]) for c in bad})
        checked += 1
    # the sample exercises every column: e-mail, pricing, searches, several devices
    seen = pd.DataFrame([profiles[c] for c in by_customer])
    assert (seen.email_opened > 0).any() and (seen.pricing_views_30d > 0).any()
    assert seen.top_search_terms.notnull().any() and (seen.devices > 1).any()
    assert checked == len(by_customer)


def _order_messages(wh):
    """Orders of customers whose orders were all kept whole, as ``Order Completed`` events."""
    orders = wh.table("orders").drop("customer_id")
    rc = wh.table("record_customers")
    rc = rc.filter(rc.record_table == "orders")
    o = wh.execute(orders.join(rc, orders.order_id == rc.record_key))
    o = o[o.ts <= AS_OF]
    ln = wh.execute(wh.table("order_lines"))
    returned = set(ln[ln.returned_quantity.fillna(0) > 0].order_id)
    bad = set(o[(o.status == "cancelled") | o.order_id.isin(returned)].customer_id)
    lines = {k: g for k, g in ln.groupby("order_id")}
    out: dict[str, list[dict]] = {}
    for r in o[~o.customer_id.isin(bad)].sort_values(["ts", "order_id"]).itertuples():
        products = []
        if r.order_id in lines:
            for x in lines[r.order_id].itertuples():
                products.append(
                    {
                        "product_id": x.product_id,
                        "category": x.category,
                        "quantity": int(x.quantity),
                        "price": float(x.unit_price),
                        "discount": float(x.line_discount)
                        if x.line_discount == x.line_discount
                        else 0.0,
                    }
                )
        props = {"order_id": r.order_id, "total": float(r.amount), "products": products}
        if r.discount == r.discount and r.discount:
            props["discount"] = float(r.discount)
        if isinstance(r.coupon, str):
            props["coupon"] = r.coupon
        out.setdefault(r.customer_id, []).append(
            {
                "messageId": f"o-{r.order_id}",
                "type": "track",
                "event": "Order Completed",
                "userId": "u",
                "timestamp": r.ts.isoformat(),
                "properties": props,
            }
        )
    return out


def test_order_columns_from_order_completed_events_equal_the_batch(built):
    wh, profiles = built
    by_customer = _order_messages(wh)
    assert len(by_customer) > 100
    for cid, msgs in by_customer.items():
        live = view(None, _replay(msgs), AS_OF)
        batch = profiles[cid]
        bad = [c for c in ORDER_COLUMNS if not _same(c, live[c], batch[c])]
        assert not bad, (cid, {c: (live[c], batch[c]) for c in bad})
        # the affinity is the preference model's, published by a build: none live before it
        assert live["category_affinity"] is None and live["top_category"] is None


def _median_gap(profiles):
    gaps = [p["mean_gap_days"] for p in profiles.values() if _na(p["mean_gap_days"]) is not None]
    return float(np.median(gaps))


def test_lifecycle_stage_in_python_equals_the_batch(built):
    _, profiles = built
    s = LifecycleSettings()
    median = _median_gap(profiles)
    stages = set()
    for p in profiles.values():
        assert lifecycle_stage(p, s, median, AS_OF) == p["lifecycle_stage"], p["customer_id"]
        assert expected_gap_days(p, s, median) == pytest.approx(p["expected_gap_days"], abs=1e-9)
        stages.add(p["lifecycle_stage"])
    assert stages == {"prospect", "new", "active", "at_risk", "churned", "reactivated"}


def test_lifecycle_stage_on_p_alive_equals_the_batch_rule(built):
    """The P(alive) branch, with P(alive) drawn at random for every buyer."""
    _, profiles = built
    s = LifecycleSettings(new_days=400)  # enough "new" people to tell the branches apart
    df = pd.DataFrame(list(profiles.values()))
    rng = np.random.default_rng(0)
    df["p_alive"] = np.where(df.orders > 0, rng.choice([0.3, 0.6, 0.9, 1.0], len(df)), np.nan)
    cols = ["customer_id", "orders", "recency_days", "mean_gap_days", "prior_gap_days"]
    cols += ["last_gap_days", "first_order_at", "p_alive"]
    t = ibis.memtable(df[cols])
    got = ibis.duckdb.connect().execute(lifecycle(t, s, ibis.literal(AS_OF)))
    median = float(df.mean_gap_days.median())
    for r in got.to_dict("records"):
        assert lifecycle_stage(r, s, median, AS_OF) == r["lifecycle_stage"], r
    assert got.lifecycle_stage.nunique() == 6


def test_segment_membership_in_memory_equals_the_batch_memberships(built):
    wh, profiles = built
    cat = live_catalogue([EXAMPLES])
    assert len(cat) >= 15
    record_snapshot(wh, cat, AS_OF, rebuild_profiles=False, models=ModelSettings(enabled=False))
    m = wh.execute(wh.table("segment_memberships"))
    m = m[m.exited_at.isnull() & ~m.segment.str.startswith("lifecycle:")]
    batch = {cid: set(g.segment) for cid, g in m.groupby("customer_id")}
    events: dict[str, list[dict]] = {}
    for r in wh.execute(customer_events(wh)).to_dict("records"):
        events.setdefault(r["customer_id"], []).append(
            {"ts": r["timestamp"].isoformat(), "event": r["name"]}
        )
    for cid, row in profiles.items():
        pub = published_doc(row, 0, events=events.get(cid, []))
        v = view(pub, None, AS_OF)
        got = members(v, cat, profile.rule_events(pub, None), AS_OF)
        assert got == batch.get(cid, set()), cid
    names = {s for ss in batch.values() for s in ss}
    assert {"window_shoppers", "pricing_page_regulars", "fishing_fans", "loyal"} <= names

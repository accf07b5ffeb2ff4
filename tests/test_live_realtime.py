"""Live profiles over published ones, and the transitions events cause: segments entered and
left, lifecycle stage changes, taste shifts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from segone.live.person import update
from segone.live.profile import apply_event, merge_docs, rebase, view
from segone.live.realtime import TasteInput, live_catalogue, shifted_to

EXAMPLES = Path(str(resources.files("segone.segments").joinpath("examples/examples.yaml")))
T0 = datetime(2025, 1, 10, 12, tzinfo=UTC)
CAT = live_catalogue([EXAMPLES])


def page(name, at, category=None, path=None):
    props = {"path": path or f"/{name.lower()}"}
    if category:
        props["category"] = category
    return {
        "type": "page",
        "name": name,
        "anonymousId": "a1",
        "timestamp": at.isoformat(),
        "properties": props,
    }


def order(oid, at, lines, total=None):
    products = [
        {"product_id": f"P{k}", "category": c, "quantity": q, "price": p}
        for k, (c, q, p) in enumerate(lines)
    ]
    props = {"order_id": oid, "products": products}
    if total is not None:
        props["total"] = total
    return {
        "type": "track",
        "event": "Order Completed",
        "userId": "u1",
        "timestamp": at.isoformat(),
        "properties": props,
    }


class Person:
    """One person's documents, fed event by event as the Engine does."""

    def __init__(self, pid, published=None, median_gap_days=None):
        self.pid, self.published, self.doc, self.seq = pid, published, None, 100
        self.median = median_gap_days

    def send(self, msg, now=None):
        self.seq += 1
        u = update(
            self.published,
            self.doc,
            msg,
            self.seq,
            now or datetime.fromisoformat(msg["timestamp"]),
            person_id=self.pid,
            catalogue=CAT,
            median_gap_days=self.median,
        )
        self.doc = u.doc
        return [(t.kind, t.segment or (t.from_, t.to)) for t in u.transitions], u


def test_segments_are_entered_and_left_as_events_and_time_go_by():
    p = Person("live-1")
    got, _ = p.send(page("Pricing", T0))
    assert got == [("segment_entered", "pricing_page_visitors")]
    got, u = p.send(page("Pricing", T0 + timedelta(days=1)))
    assert got == [("segment_entered", "pricing_page_regulars")]
    assert u.view["pricing_views_30d"] == 2 and u.view["lifecycle_stage"] == "prospect"
    got, _ = p.send(page("Home", T0 + timedelta(days=3)))
    assert got == []
    # weeks later, the next event finds both pricing windows passed
    got, _ = p.send(page("Home", T0 + timedelta(days=40)))
    assert got == [
        ("segment_left", "pricing_page_regulars"),
        ("segment_left", "pricing_page_visitors"),
    ]
    assert p.doc["rt"]["segments"] == []


def test_window_shopper_then_first_order():
    p = Person("live-2")
    for k in range(9):
        assert p.send(page("Home", T0 + timedelta(minutes=k)))[0] == []
    got, _ = p.send(page("Home", T0 + timedelta(minutes=10)))
    assert got == [("segment_entered", "window_shoppers")]
    got, u = p.send(order("O1", T0 + timedelta(hours=1), [("Books > Fiction", 1, 20.0)]))
    assert got == [("segment_left", "window_shoppers"), ("stage_changed", ("prospect", "new"))]
    assert u.view["orders"] == 1 and u.view["revenue"] == 20.0
    assert u.view["categories_bought"] == ["Books > Fiction"]
    # the affinity (and top_category) is the preference model's, from the next build
    assert u.view["top_category"] is None and u.view["category_affinity"] is None


def test_a_churned_customer_buying_again_is_reactivated():
    published = {
        "customer_id": "cus_1",
        "orders": 1,
        "revenue": 50.0,
        "first_order_at": "2024-01-01T00:00:00+00:00",
        "last_order_at": "2024-01-01T00:00:00+00:00",
        "first_seen": "2023-12-01T00:00:00+00:00",
        "last_seen": "2024-01-01T00:00:00+00:00",
        "lifecycle_stage": "churned",
        "p_alive": 0.2,  # fitted before this order: the stage is judged on the cadence
        "events": 7,
        "page_views": 5,
        "_cursor": 100,
    }
    p = Person("cus_1", published, median_gap_days=30.0)
    got, u = p.send(order("O9", T0, [("Books > Fiction", 2, 15.0)], total=30.0))
    assert got == [("stage_changed", ("churned", "reactivated"))]
    v = u.view
    assert v["orders"] == 2 and v["revenue"] == 80.0 and v["aov"] == 40.0
    assert v["last_gap_days"] == (T0 - datetime(2024, 1, 1, tzinfo=UTC)).total_seconds() / 86400
    assert v["events"] == 8 and v["page_views"] == 5 and v["recency_days"] == 0.0
    assert v["first_seen"] == datetime(2023, 12, 1, tzinfo=UTC) and v["last_seen"] == T0
    # the same order sent again (another messageId) counts once
    got, u = p.send(
        order("O9", T0 + timedelta(minutes=1), [("Books > Fiction", 2, 15.0)], total=30.0)
    )
    assert got == [] and u.view["orders"] == 2 and u.view["events"] == 9


def test_taste_shift_fires_once_per_shift():
    published = {
        "customer_id": "cus_2",
        "top_category": "Books > Fiction > Crime",
        "tastes": [
            {"category": "Books > Fiction", "share": 0.7},
            {"category": "Home > Kitchen", "share": 0.3},
        ],
        "_cursor": 0,
    }
    p = Person("cus_2", published)
    fishing = "Sports & Outdoors > Fishing > Rods"
    for k in range(4):  # too few signals yet
        assert p.send(page("Product", T0 + timedelta(hours=k), fishing, "/p/1"))[0] == []
    got, u = p.send(page("Product", T0 + timedelta(hours=5), fishing, "/p/2"))
    assert got == [("taste_shift", ("Books > Fiction", "Sports & Outdoors > Fishing"))]
    (t,) = u.transitions
    assert t.detail == {"share": 1.0, "signals": 5}
    assert p.send(page("Product", T0 + timedelta(hours=6), fishing, "/p/3"))[0] == []
    # on to something else again: a new shift (and, as a first order, a new customer)
    got, _ = p.send(order("O1", T0 + timedelta(hours=7), [("Home > Garden > Tools", 1, 5.0)] * 2))
    assert got == [
        ("stage_changed", ("prospect", "new")),
        ("taste_shift", ("Books > Fiction", "Home > Garden")),
    ]
    # nobody without a published taste shifts
    q = Person("live-3")
    for k in range(8):
        assert q.send(page("Product", T0 + timedelta(hours=k), fishing, "/p/1"))[0] == []


def test_shift_rule():
    base = {"Books > Fiction": 0.8, "Home > Kitchen": 0.1}
    assert shifted_to(TasteInput({"A > B": 2.0}, 5, base)) == "A > B"
    assert shifted_to(TasteInput({"A > B": 2.0}, 4, base)) is None  # too few signals
    assert shifted_to(TasteInput({"Home > Kitchen": 2.0}, 5, base)) == "Home > Kitchen"  # was minor
    assert shifted_to(TasteInput({"Books > Fiction": 3.0, "A > B": 2.0}, 5, base)) is None
    assert shifted_to(TasteInput({"A > B": 1.0, "C > D": 1.0, "E > F": 0.5}, 9, base)) is None
    assert shifted_to(TasteInput({"A > B": 2.0}, 5, {})) is None


def test_traits_and_payloads():
    p = Person("live-4")
    msg = {
        "type": "identify",
        "userId": "u1",
        "timestamp": T0.isoformat(),
        "traits": {
            "email": "jane@x.com",
            "firstName": "Jane",
            "emailOptIn": "yes",
            "sms_consent": False,
            "address": {"city": "Leeds", "postalCode": "LS1"},
        },
    }
    _, u = p.send(msg)
    v = u.view
    assert (v["first_name"], v["city"], v["postcode"]) == ("Jane", "Leeds", "LS1")
    assert v["consent_email"] is True and v["consent_sms"] is False and v["consent_push"] is None
    for _ in range(2):
        _, u = p.send(page("Pricing", T0))
    payloads = json.dumps([t.payload() for t in u.transitions] + [p.doc["rt"]])
    assert "pricing_page_regulars" in payloads
    assert "jane" not in payloads.lower() and "leeds" not in payloads.lower()


def test_only_events_after_the_published_cursor_count():
    doc = None
    for seq in (1, 2, 3):
        doc = apply_event(doc, page("Home", T0 + timedelta(hours=seq)), seq, T0)
    published = {"customer_id": "c", "events": 10, "page_views": 10, "_cursor": 2}
    v = view(published, doc, T0 + timedelta(days=1))
    assert v["events"] == 11 and v["page_views"] == 11
    assert v["last_event_at"] == T0 + timedelta(hours=3)
    rebased = rebase(doc, 2)
    assert rebased["agg"]["n"]["events"] == 1 and view(published, rebased, T0)["events"] == 11


MSGS = st.lists(
    st.one_of(
        st.builds(
            lambda h, n: page(n, T0 + timedelta(hours=h)),
            st.integers(0, 500),
            st.sampled_from(["Pricing", "Home"]),
        ),
        st.builds(
            lambda h, a: order(f"O{h}", T0 + timedelta(hours=h), [("A > B", 1, a)]),
            st.integers(0, 500),
            st.floats(1, 100),
        ),
        st.builds(
            lambda h, q: {
                "type": "track",
                "event": "Products Searched",
                "timestamp": (T0 + timedelta(hours=h)).isoformat(),
                "anonymousId": f"d{h % 3}",
                "properties": {"query": q},
            },
            st.integers(0, 500),
            st.sampled_from(["rod", "reel", "tent"]),
        ),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=40, deadline=None)
@given(msgs=MSGS, split=st.lists(st.booleans(), min_size=25, max_size=25))
def test_merging_two_people_is_order_independent(msgs, split):
    docs = [None, None]
    whole = None
    for seq, m in enumerate(msgs, 1):
        if m.get("event") == "Order Completed":  # one order is one person's
            m = {**m, "properties": {**m["properties"], "order_id": f"O{seq}"}}
        side = int(split[seq - 1])
        docs[side] = apply_event(docs[side], m, seq, T0)
        whole = apply_event(whole, m, seq, T0)
    now = T0 + timedelta(days=30)
    ab = view(None, merge_docs(docs[0], docs[1]), now)
    ba = view(None, merge_docs(docs[1], docs[0]), now)
    one = view(None, whole, now)
    for v in (ab, ba):
        for col in (
            "events",
            "page_views",
            "pricing_views",
            "pricing_views_30d",
            "devices",
            "orders",
            "top_search_terms",
            "first_event_at",
            "last_event_at",
            "last_order_at",
            "previous_order_at",
            "items",
        ):
            assert v[col] == one[col], col
        assert abs(v["revenue"] - one["revenue"]) < 1e-6


@settings(max_examples=60, deadline=None)
@given(msgs=MSGS, cut=st.integers(0, 25), with_events=st.booleans())
def test_records_a_build_has_read_are_dropped_without_changing_anything(msgs, cut, with_events):
    """After a publish whose cursor covers a person's first events, their document keeps only
    the later records and the orders (when the build published its recent events for rules),
    and every view and transition is what it was when all records were kept."""
    import segone.live.person as person_module
    from segone.live import profile

    def run(drop: bool):
        keep_all = profile.rebase

        def rebase(doc, cursor, *, drop_records=False):
            return keep_all(doc, cursor, drop_records=drop_records and drop)

        person_module.profile.rebase = rebase
        try:
            p = Person("p1", published={"customer_id": "c", "events": 3, "_cursor": 0})
            out = []
            for i, m in enumerate(msgs):
                if i == cut:  # a build read everything so far, and published it
                    p.published = {"customer_id": "c", "events": 3 + i, "_cursor": p.seq}
                    if with_events:
                        p.published["_events"] = []
                got, u = p.send(m, now=T0 + timedelta(days=30))
                out.append((got, u.view, profile.rule_events(p.published, p.doc)))
            return out, p.doc
        finally:
            person_module.profile.rebase = keep_all

    kept, doc_kept = run(drop=False)
    dropped, doc_dropped = run(drop=True)
    assert dropped == kept
    if with_events and cut < len(msgs):  # rebased after the publish: seq 100 + cut was read
        later = [r for r in doc_kept["events"] if r["seq"] > 100 + cut or "order" in r]
        assert doc_dropped["events"] == later  # orders stay: what a person bought
    else:
        assert doc_dropped["events"] == doc_kept["events"]

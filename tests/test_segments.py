"""Segment rules: clear errors, and the batch and in-memory evaluators agree on every person."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segone.config import IngestSettings
from segone.datasets import SAMPLE_FILES
from segone.ingest import ingest_file
from segone.pipeline.build import build
from segone.profiles.lookup import find_customers
from segone.segments import (
    RuleError,
    evaluate,
    load_catalogue,
    memberships,
    profile_attributes,
    rule_from_obj,
)
from segone.segments.batch import customer_events
from segone.segments.rules import Catalogue, Segment
from segone.store.duckdb import DuckDBWarehouse
from tests.conftest import jsonl, write

AS_OF = datetime(2024, 12, 31, 23, 59, tzinfo=UTC)
EXAMPLES = Path(str(resources.files("segone.segments").joinpath("examples/examples.yaml")))


@pytest.fixture(scope="module")
def built(small_sample, tmp_path_factory):
    out, _ = small_sample
    db = tmp_path_factory.mktemp("seg") / "wh.duckdb"
    wh = DuckDBWarehouse(db)
    st_ = IngestSettings(
        mapping={"customers_loyalty": {"source_id": "card_number", "loyalty_id": "card_number"}}
    )
    for kind, name in SAMPLE_FILES:
        ingest_file(wh, kind, out / "data" / name, settings=st_)
    build(wh, as_of=AS_OF)
    profiles = {r["customer_id"]: r for r in wh.execute(wh.table("profiles")).to_dict("records")}
    events: dict[str, list[dict]] = {}
    for r in wh.execute(customer_events(wh)).to_dict("records"):
        events.setdefault(r["customer_id"], []).append(r)
    yield wh, profiles, events
    wh.close()


def _batch(wh, cat):
    m = wh.execute(memberships(wh, cat, AS_OF))
    return {s: set(m[m.segment == s].customer_id) for s in cat.segments}


def _memory(profiles, events, cat):
    return {
        s.name: {
            cid
            for cid, p in profiles.items()
            if evaluate(s.rule, p, events=events.get(cid, []), now=AS_OF, cat=cat)
        }
        for s in cat
    }


def test_examples_agree_between_batch_and_memory(built):
    wh, profiles, events = built
    from segone.segments.builtin import builtin_catalogue

    attrs = profile_attributes(wh)
    cat = load_catalogue([EXAMPLES], attrs, base=builtin_catalogue(attrs))
    assert len(cat) >= 15
    batch, memory = _batch(wh, cat), _memory(profiles, events, cat)
    assert batch == memory
    for name in ("window_shoppers", "vip", "charmed", "loyal", "detractors", "discount_abusers"):
        assert batch[name], name


ATTRS = {
    "orders": st.integers(0, 5),
    "revenue": st.floats(0, 2000),
    "page_views": st.integers(0, 20),
    "avg_sentiment": st.floats(-1, 1),
    "email_open_rate": st.floats(0, 1),
}


def _cmp():
    num = st.sampled_from(sorted(ATTRS)).flatmap(
        lambda a: st.tuples(
            st.just(a), st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"]), ATTRS[a]
        )
    )
    other = st.one_of(
        st.just({"social_follower": True}),
        st.just({"crm_stage": {"in": ["customer", "opportunity"]}}),
        st.just({"channels": {"contains": "store"}}),
        st.just({"consent_email": {"is_null": True}}),
        st.just({"event": {"name": "Pricing", "min": 1, "within_days": 60}}),
        st.just({"event": {"name": "Products Searched", "min": 2}}),
    )
    return st.one_of(num.map(lambda t: {t[0]: {t[1]: t[2]}}), other)


rules = st.recursive(
    _cmp(),
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3).map(lambda xs: {"all": xs}),
        st.lists(inner, min_size=1, max_size=3).map(lambda xs: {"any": xs}),
        inner.map(lambda x: {"not": x}),
    ),
    max_leaves=5,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rule=rules)
def test_any_rule_means_the_same_in_batch_and_in_memory(built, rule):
    wh, profiles, events = built
    cat = Catalogue()
    cat.add(Segment("r", rule_from_obj(rule, profile_attributes(wh))))
    assert _batch(wh, cat) == _memory(profiles, events, cat)


def test_the_required_example(wh, tmp_path):
    write(
        tmp_path / "crm.csv",
        "id,email,stage\nC1,ann@x.com,opportunity\nC2,bob@x.com,opportunity\nC3,cat@x.com,lead\n",
    )
    write(
        tmp_path / "social.csv",
        "id,type,author_email,ts\nS1,follow,ann@x.com,2024-12-01\nS2,follow,cat@x.com,2024-12-01\n",
    )
    jsonl(
        tmp_path / "ev.jsonl",
        [
            {
                "type": "identify",
                "userId": n,
                "traits": {"email": f"{n}@x.com"},
                "timestamp": "2024-12-20T00:00:00Z",
                "messageId": f"i{n}",
            }
            for n in ("ann", "bob", "cat")
        ]
        + [
            {
                "type": "page",
                "userId": n,
                "name": "Pricing",
                "properties": {"path": "/pricing"},
                "timestamp": "2024-12-21T00:00:00Z",
                "messageId": f"p{n}",
            }
            for n in ("ann", "bob", "cat")
        ],
    )
    ingest_file(wh, "customers", tmp_path / "crm.csv", source="crm")
    ingest_file(wh, "interactions", tmp_path / "social.csv")
    ingest_file(wh, "events", tmp_path / "ev.jsonl")
    build(wh, as_of=AS_OF)
    cat = load_catalogue([EXAMPLES], profile_attributes(wh))
    m = wh.execute(memberships(wh, cat, AS_OF))
    hot = m[m.segment == "hot_pricing_leads"].customer_id
    cm = wh.execute(wh.table("customer_map")).set_index("node").customer_id
    assert list(hot) == [cm["email:ann@x.com"]]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "- name: a\n  rule:\n    ordrs: {gte: 1}\n",
            r"x.yaml:3: unknown attribute 'ordrs' \(did you mean 'orders'\?\)",
        ),
        ("- name: a\n  rule:\n    orders: {between: 1}\n", r"x.yaml:3: unknown operator 'between'"),
        ("- name: a\n  rule:\n    orders: {gte: many}\n", r"x.yaml:3: orders .* is a number"),
        ("- name: a\n  rule:\n    crm_stage: {gt: 3}\n", r"x.yaml:3: crm_stage .* is text"),
        ("- name: a\n  rule:\n    last_seen: {gt: 3}\n", r"cannot be compared directly"),
        (
            "- name: a\n  rule: {segment: b}\n- name: b\n  rule: {segment: a}\n",
            r"cycle: a -> b -> a",
        ),
        ("- name: a\n  rule: {segment: zzz}\n", r"unknown segment 'zzz'"),
        ("- name: a\n  rule:\n    all: [\n", r"x.yaml:\d+: not valid YAML"),
        ("- name: a\n  rule:\n    orders: 1\n    revenue: 2\n", r"one condition per list item"),
        ("- name: a\n  rule:\n    event: {name: X, within_days: -1}\n", r"within_days > 0"),
        ("- name: a\n  rule: {orders: 1}\n- name: a\n  rule: {orders: 2}\n", r"defined twice"),
    ],
)
def test_bad_rules_name_file_line_and_problem(tmp_path, text, message):
    attrs = {
        "orders": __import__("ibis").expr.datatypes.int64,
        "revenue": __import__("ibis").expr.datatypes.float64,
        "crm_stage": __import__("ibis").expr.datatypes.string,
        "last_seen": __import__("ibis").expr.datatypes.Timestamp(timezone="UTC"),
    }
    p = write(tmp_path / "x.yaml", text)
    with pytest.raises(RuleError, match=message):
        load_catalogue([p], attrs)


def test_segments_cli(built, tmp_path):
    from typer.testing import CliRunner

    from segone.cli import app

    wh, _, _ = built
    proj = tmp_path / "p"
    runner = CliRunner()
    assert runner.invoke(app, ["init", str(proj)]).exit_code == 0
    assert (proj / "segments" / "examples.yaml").exists()
    r = runner.invoke(app, ["segments", "list", "-p", str(proj)])
    assert r.exit_code == 2 and "segone build" in r.output  # nothing built yet
    # reuse the module's built warehouse as this project's
    import shutil

    wh.backend.raw_sql("CHECKPOINT")
    shutil.copy(wh.path, proj / "warehouse.duckdb")
    r = runner.invoke(app, ["segments", "list", "-p", str(proj)])
    assert r.exit_code == 0 and "window_shoppers" in r.output
    r = runner.invoke(app, ["segments", "show", "unhappy_buyers", "-p", str(proj)])
    assert r.exit_code == 0 and "not in segment big_spenders" in r.output
    write(
        tmp_path / "mine.yaml",
        "- name: loyal_big\n  rule:\n    all: [{segment: big_spenders}, {orders: {gte: 2}}]\n",
    )
    r = runner.invoke(app, ["segments", "preview", str(tmp_path / "mine.yaml"), "-p", str(proj)])
    assert r.exit_code == 0 and "loyal_big" in r.output
    write(tmp_path / "bad.yaml", "- name: x\n  rule:\n    ordrs: 1\n")
    r = runner.invoke(app, ["segments", "preview", str(tmp_path / "bad.yaml"), "-p", str(proj)])
    assert r.exit_code == 2 and "bad.yaml:3" in r.output and "orders" in r.output
    out = tmp_path / "ws.parquet"
    r = runner.invoke(
        app,
        [
            "segments",
            "export",
            "window_shoppers",
            "--out",
            str(out),
            "--format",
            "parquet",
            "-p",
            str(proj),
        ],
    )
    assert r.exit_code == 0
    import pandas as pd

    df = pd.read_parquet(out)
    assert len(df) > 0 and (df.orders == 0).all() and (df.page_views >= 10).all()


def test_memberships_history_and_transitions(wh, tmp_path):
    from segone.pipeline.backfill import backfill, record_snapshot
    from segone.segments.history import transition_matrix

    write(
        tmp_path / "o.csv",
        "order_id,email,ts,amount\n"
        "A1,a@x.com,2024-01-01,10\nA2,a@x.com,2024-01-08,10\nA3,a@x.com,2024-01-15,10\n"
        "B1,b@x.com,2024-03-01,10\n",
    )
    ingest_file(wh, "orders", tmp_path / "o.csv")
    build(wh, as_of=AS_OF)
    cat = load_catalogue(
        [write(tmp_path / "s.yaml", "- name: repeat\n  rule: {orders: {gte: 2}}\n")],
        profile_attributes(wh),
    )
    rs = backfill(
        wh, cat, datetime(2024, 1, 1, 12, tzinfo=UTC), datetime(2024, 3, 31, 23, 59, tzinfo=UTC), 30
    )
    assert len(rs) == 4
    m = wh.execute(wh.table("segment_memberships"))
    a = m[m.customer_id == find_customers(wh, "a@x.com")[0]].set_index("segment")
    assert a.loc["repeat"].entered_at.date().isoformat() == "2024-01-31"  # 2nd order on Jan 8
    assert "lifecycle:new" in a.index and "lifecycle:churned" in a.index
    assert a.loc["lifecycle:new"].exited_at.date().isoformat() == "2024-01-31"
    moves = wh.execute(transition_matrix(wh)).set_index(["from_stage", "to_stage"]).moves
    # b@x.com does not exist before their first order (March): first seen as new, never a
    # prospect in January (an as-of snapshot must not know people from its future)
    assert moves[("(first seen)", "new")] == 2 and moves[("new", "at_risk")] == 1
    assert ("(first seen)", "prospect") not in moves.index
    assert moves[("at_risk", "churned")] == 1  # a weekly buyer gone quiet
    with pytest.raises(Exception, match="snapshots go forward"):
        record_snapshot(wh, cat, datetime(2024, 2, 1, tzinfo=UTC))


def test_macro_baselines(built):
    from segone.segments.macro import build_macro_segments

    wh, profiles, _ = built
    sizes = build_macro_segments(wh, k=4)
    assert len(sizes) == 4 and sum(sizes.values()) == sum(
        1 for p in profiles.values() if p["orders"] > 0
    )
    m = wh.execute(wh.table("macro_segments"))
    assert set(m.rfm_segment) >= {"champions", "non_buyer", "hibernating"}
    assert (m[m.rfm_segment == "non_buyer"].cluster == -1).all()

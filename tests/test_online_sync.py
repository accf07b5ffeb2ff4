"""Batch and real time meet: a build picks up what the server received and publishes its
results back; erasures through the API reach the warehouse."""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from segone.datasets import SAMPLE_FILES, generate_sample
from segone.datasets.sample import SAMPLE_TOML
from segone.ingest import ingest_file
from segone.models.nextproducts import purchase_lines
from segone.models.preference import ItemPreferences
from segone.online.engine import Engine
from segone.pipeline.build import build_project
from segone.pipeline.publish import open_online, order_rows
from segone.project import Project

NOW = datetime.now(UTC).isoformat()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    root = tmp_path_factory.mktemp("online-sync")
    sample = root / "sample"
    generate_sample(sample, customers=250, seed=5)
    proj = Project.init(root / "proj")
    cfg = proj.root / "segone.toml"
    # the churn model is not what these tests are about (and it takes most of a build)
    cfg.write_text(cfg.read_text().replace("churn = true", "churn = false") + SAMPLE_TOML)
    proj = Project.open(proj.root)
    with proj.warehouse() as wh:
        for kind, name in SAMPLE_FILES:
            ingest_file(wh, kind, sample / "data" / name, settings=proj.settings.ingest)
    shutil.rmtree(sample)
    result, pub = build_project(proj, create_online=True)
    assert pub is not None and pub.published == result.profiles
    return proj


def _msg(mid: str, **kw: object) -> dict[str, object]:
    return {"messageId": mid, "timestamp": NOW, "receivedAt": NOW, **kw}


def test_publish_serves_batch_profiles_by_any_identifier(project: Project) -> None:
    store = open_online(project.settings)
    assert store is not None
    with project.warehouse(read_only=True) as wh:
        cm = wh.execute(wh.table("customer_map").filter(lambda t: t.id_type == "email").limit(1))
        n_profiles = wh.count("profiles")
    email, customer = cm.node[0], cm.customer_id[0]
    with store.read() as tx:
        assert tx.identity.lookup([email]) == {email: customer}
        doc = tx.docs.get("published", [customer])[customer]
        assert tx.meta.get("published_version") is not None
        assert len(tx.docs.all("published")) == n_profiles
        assert tx.docs.all("catalogue")
    assert doc["customer_id"] == customer and "segments" in doc and "_cursor" in doc
    store.close()


def test_the_build_publishes_the_preference_model_decide_ranks_with(project: Project) -> None:
    from segone.models.registry import latest_model

    store = open_online(project.settings)
    assert store is not None
    with project.warehouse(read_only=True) as wh:
        model = latest_model(wh, "preferences")
        email = wh.execute(wh.table("customer_map").filter(lambda t: t.id_type == "email"))
        assert model is not None and model.params["concentration"] > 0
        fitted = ItemPreferences().fit(
            wh, purchase_lines(wh, as_of=model.window_end), as_of=model.window_end
        )
    prefs = fitted.table().to_pandas()
    reachable = prefs[prefs.customer_id.isin(email.customer_id)]
    cid = str(reachable.customer_id.iloc[0])
    mine = prefs[prefs.customer_id == cid]
    with store.read() as tx:
        doc = tx.docs.get("published", [cid])[cid]
        cat = tx.docs.all("catalogue")
    # what was published is what the fit weighs (recomputed from the orders at publish)
    assert doc["preferences"] == pytest.approx(dict(zip(mine.product_id, mine.weight, strict=True)))
    assert cat[str(mine.product_id.iloc[0])]["preference_prior"] == pytest.approx(
        float(fitted.prior_[list(fitted.items_).index(mine.product_id.iloc[0])])
    )
    learned = [d for d in cat.values() if "preference_prior" in d]
    assert learned and all(isinstance(d["buy_again"], bool) for d in learned)
    # the server ranks this person's candidates with it: probabilities over the candidates
    who = email[email.customer_id == cid].node
    engine = Engine(store, project.settings)
    items = list(cat)[:5] + list(mine.product_id)[:1]
    body = {"identifier": who.iloc[0], "placement": "t", "candidates": items, "limit": 6}

    async def ask() -> dict:
        await engine.start()
        try:
            return await engine.decide(body)
        finally:
            await engine.stop()

    got = asyncio.run(ask())
    probs = [i["probability"] for i in got["items"]]
    assert probs and all(p is not None and p > 0 for p in probs)
    store.close()


def test_server_events_and_erasures_reach_the_warehouse(project: Project) -> None:
    """One rebuild: the server's events (an order among them) are loaded and come back
    published; a person erased through the API is erased from the warehouse too."""
    store = open_online(project.settings)
    assert store is not None
    with project.warehouse(read_only=True) as wh:
        row = wh.execute(wh.table("customer_map").filter(lambda t: t.id_type == "email").limit(1))
    erased_email, erased_customer = row.node[0], row.customer_id[0]
    engine = Engine(store, project.settings)
    order = {
        "order_id": "srv-1",
        "total": 42.5,
        "currency": "USD",
        "products": [{"product_id": "srv-p1", "category": "Books", "price": 42.5, "quantity": 1}],
    }
    got = engine.ingest_sync(
        [
            _msg(
                "s1",
                type="identify",
                userId="server-user-1",
                anonymousId="anon-s1",
                traits={"email": "Server.User@Example.com"},
            ),
            _msg(
                "s2", type="track", event="Order Completed", anonymousId="anon-s1", properties=order
            ),
            _msg(
                "s3",
                type="page",
                name="Pricing",
                anonymousId="anon-s1",
                properties={"path": "/pricing"},
            ),
            _msg("s1", type="identify", userId="server-user-1"),  # a retry: stored once
        ]
    )
    assert got == {"accepted": 3, "duplicates": 1}

    async def erase() -> object:
        await engine.start()
        try:
            return await engine.erase(erased_email)
        finally:
            await engine.stop()

    assert asyncio.run(erase()) is not None
    with store.read() as tx:
        assert tx.identity.lookup([erased_email]) == {}
        assert tx.docs.get("published", [erased_customer]) == {}
        last_seq = tx.events.after(0, 10)[-1][0]
    store.close()

    _, pub = build_project(project)
    assert pub is not None and pub.events == 3 and pub.orders == 1 and pub.erased == 1
    with project.warehouse(read_only=True) as wh:
        o = wh.execute(wh.table("orders").filter(lambda t: t.order_id == "srv-1"))
        assert len(o) == 1 and o.amount[0] == 42.5
        cm = wh.table("customer_map")
        cid = wh.execute(cm.filter(cm.node == "user_id:server-user-1")).customer_id[0]
        prof = wh.execute(wh.table("profiles").filter(lambda t: t.customer_id == cid))
        assert prof.orders[0] == 1 and prof.pricing_views[0] == 1
        assert wh.execute(cm.filter(cm.customer_id == erased_customer).count()) == 0
    store = open_online(project.settings)
    assert store is not None
    with store.read() as tx:
        # the live-only person became the warehouse customer, with everything they had
        assert tx.identity.lookup(["anonymous_id:anon-s1"]) == {"anonymous_id:anon-s1": cid}
        assert tx.docs.get("published", [cid])[cid]["orders"] == 1
        assert tx.meta.get("warehouse_cursor") == str(last_seq)  # nothing left to pick up
        assert tx.erasure.queued() == []
    store.close()


def test_order_completed_becomes_order_lines() -> None:
    rows = order_rows(
        _msg(
            "o",
            type="track",
            event="Order Completed",
            userId="u",
            properties={
                "order_id": 7,
                "revenue": 10,
                "products": [{"sku": "a"}, {"sku": "b", "quantity": 2}],
            },
        )
    )
    assert [(r["order_id"], r["product_id"], r["quantity"]) for r in rows] == [
        ("7", "a", 1),
        ("7", "b", 2),
    ]
    assert order_rows(_msg("x", type="track", event="Product Viewed", userId="u")) == []


def test_no_online_store_means_a_plain_build(tmp_path: Path) -> None:
    proj = Project.init(tmp_path / "p")
    assert open_online(proj.settings) is None

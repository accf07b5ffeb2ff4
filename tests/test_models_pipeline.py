"""`segone build` predicts for every person, records its fits, and reuses them when asked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from segone.ingest import ingest_file
from segone.models.settings import ModelSettings
from segone.pipeline.build import build
from tests.conftest import write

AS_OF = datetime(2024, 12, 31, 23, 59, tzinfo=UTC)


def _orders(tmp_path, n_people: int = 120, seed: int = 4):
    """People buying at their own rate until they (maybe) stop: a small buy-till-you-die world."""
    rng = np.random.default_rng(seed)
    start = datetime(2023, 1, 1, tzinfo=UTC)
    rows = ["order_id,email,ts,amount,product_id,category,quantity,unit_price"]
    k = 0
    for p in range(n_people):
        rate = rng.gamma(1.5, 1 / 40)  # orders per day
        life = rng.exponential(400)
        t = rng.uniform(0, 300)
        while t < min(life, 729):
            prod = f"P{rng.integers(0, 12):02d}"
            price = round(float(rng.gamma(4, 10)), 2)
            ts = (start + timedelta(days=float(t))).strftime("%Y-%m-%d %H:%M:%S")
            rows.append(f"O{k},p{p}@x.com,{ts},{price},{prod},Home > Kitchen,1,{price}")
            k += 1
            t += rng.exponential(1 / rate)
    return write(tmp_path / "orders.csv", "\n".join(rows) + "\n")


def test_build_scores_everyone_and_reuses_a_recent_fit(wh, tmp_path):
    ingest_file(wh, "orders", _orders(tmp_path))
    settings = ModelSettings(refit_after_days=30, recommendations=3)
    r = build(wh, as_of=AS_OF, models=settings)
    assert r.models is not None and set(r.models.fitted) >= {"pareto_nbd", "gamma_gamma"}
    assert r.models.reused == []
    p = wh.execute(wh.table("profiles"))
    buyers = p[p.orders > 0]
    assert len(buyers) > 60
    assert buyers.p_alive.between(0, 1).all() and buyers.clv.ge(0).all()
    assert buyers.expected_purchases.notnull().all()
    # lifecycle follows P(alive) for modelled buyers
    churned = buyers[buyers.lifecycle_stage == "churned"]
    assert (churned.p_alive < 0.5).all() or (churned.recency_days > 730).any()
    s = wh.execute(wh.table("scores"))
    assert set(s.customer_id) == set(buyers.customer_id)
    recs = wh.execute(wh.table("recommendations"))
    assert recs.groupby("customer_id").size().max() == 3
    lines, rc = wh.table("order_lines"), wh.table("record_customers")
    owned = wh.execute(
        lines.join(rc, lines.order_id == rc.record_key).select("customer_id", "product_id")
    )
    assert recs.merge(owned, on=["customer_id", "product_id"]).empty  # never what they own
    assert wh.count("category_affinity") > 0
    m = wh.execute(wh.table("models"))
    assert m.loc[m.name == "pareto_nbd", "version"].tolist() == [1]

    # a day later, within refit_after_days: the BTYD fits are reused, not refitted
    quick = ModelSettings(refit_after_days=30, recommendations=0, churn=False)
    r2 = build(wh, as_of=AS_OF + timedelta(days=1), models=quick)
    assert r2.models is not None and "pareto_nbd" in r2.models.reused
    m = wh.execute(wh.table("models"))
    assert m.loc[m.name == "pareto_nbd", "version"].tolist() == [1]
    # refit_after_days = 0 (the default) refits every build
    build(wh, as_of=AS_OF + timedelta(days=2), models=ModelSettings(recommendations=0, churn=False))
    m = wh.execute(wh.table("models"))
    assert sorted(m.loc[m.name == "pareto_nbd", "version"]) == [1, 2]


def test_models_can_be_turned_off(wh, tmp_path):
    ingest_file(wh, "orders", _orders(tmp_path, n_people=20))
    build(wh, as_of=AS_OF, models=ModelSettings(enabled=False))
    p = wh.execute(wh.table("profiles"))
    assert p.p_alive.isnull().all() and p.churn_probability.isnull().all()
    # no model, no affinity (it is the preference model's)
    assert p.category_affinity.isnull().all() and p.top_category.isnull().all()
    assert wh.count("models") == 0 and wh.count("scores") == 0
    # and an earlier build's affinity is not left behind for another date
    build(wh, as_of=AS_OF, models=ModelSettings(recommendations=0, churn=False))
    assert wh.count("category_affinity") > 0
    build(wh, as_of=AS_OF, models=ModelSettings(enabled=False))
    assert wh.count("category_affinity") == 0

"""The same data gives the same scores, to the last bit, whatever the order of its rows."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from segone.ingest import ingest_file
from segone.models.churn import ChurnModel
from segone.pipeline.build import build_project
from segone.project import Project

AS_OF = datetime(2024, 12, 31, 23, 59, tzinfo=UTC)
SCORES = ["p_alive", "expected_purchases", "expected_order_value", "clv", "churn_probability"]


def _history(n_people: int = 150, seed: int = 7) -> list[list[object]]:
    """People buying at their own rate until they stop, over two years (both churn windows)."""
    rng = np.random.default_rng(seed)
    start = datetime(2023, 1, 1, tzinfo=UTC)
    rows: list[list[object]] = []
    for p in range(n_people):
        rate, life, t = rng.gamma(1.5, 1 / 45), rng.exponential(450), rng.uniform(0, 400)
        k = 0
        while t < min(life, 729):
            ts = start + timedelta(days=float(t))
            rows.append([f"O{p}-{k}", f"p{p}@x.com", ts.isoformat(), round(rng.gamma(4, 9), 2)])
            k += 1
            t += rng.exponential(1 / rate)
    return rows


def _build(folder: Path, rows: list[list[object]]) -> pd.DataFrame:
    f = folder / "orders.csv"
    with f.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["order_id", "email", "ts", "amount"])
        w.writerows(rows)
    proj = Project.init(folder / "p")
    with proj.warehouse() as wh:
        ingest_file(wh, "orders", f, identity=proj.settings.identity)
    result, _ = build_project(proj, as_of=AS_OF)
    assert "churn" in result.models.fitted, result.summary()  # the trained model was used
    with proj.warehouse(read_only=True) as wh:
        s = wh.execute(wh.table("scores"))
        cm = wh.execute(wh.table("customer_map"))
    email = cm[cm.id_type == "email"][["node", "customer_id"]]
    return s.merge(email, on="customer_id").set_index("node").sort_index()


def test_shuffled_rows_give_bit_identical_scores(tmp_path):
    rows = _history()
    shuffled = [rows[i] for i in np.random.default_rng(1).permutation(len(rows))]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = _build(tmp_path / "a", rows), _build(tmp_path / "b", shuffled)
    assert list(a.index) == list(b.index) and len(a) > 80
    # two projects (two secrets), rows in another order: the same customer ids
    assert list(a.customer_id) == list(b.customer_id)
    assert a.customer_id.str.fullmatch(r"cus_\d{8}").all()
    assert a.churn_probability.notnull().all()
    for c in SCORES:
        x, y = a[c].to_numpy(float), b[c].to_numpy(float)
        assert np.array_equal(x, y, equal_nan=True), (c, np.nanmax(np.abs(x - y)))


def test_churn_model_does_not_depend_on_the_order_of_its_rows():
    # from 10,000 rows gradient boosting holds out a validation share by position for early
    # stopping: the same buyers in another order used to give another model (scores 0.17 apart)
    rng = np.random.default_rng(3)
    n = 12_000
    X = pd.DataFrame(
        {
            "customer_id": [f"cus_{i:06d}" for i in range(n)],
            "orders": rng.integers(1, 9, n),
            "recency_days": rng.uniform(0, 400, n),
            "revenue": rng.gamma(2, 40, n),
        }
    )
    y = rng.random(n) < 1 / (1 + np.exp(-(X.recency_days / 100 - X.orders / 3)))
    perm = rng.permutation(n)
    a = ChurnModel().fit(X, y).predict_proba(X)
    b = ChurnModel().fit(X.iloc[perm].reset_index(drop=True), y[perm]).predict_proba(X)
    assert np.array_equal(a, b)
    # nor on the customer ids, which are salted with each project's secret
    renamed = X.assign(customer_id=[f"cus_{k:06d}" for k in rng.permutation(n)])
    assert np.array_equal(a, ChurnModel().fit(renamed, y).predict_proba(X))

"""Holdouts (stability, merges, balance, SRM) and lift statistics (coverage, warehouse join)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import ibis
import numpy as np
import pyarrow as pa
import pytest
from statsmodels.stats.proportion import confint_proportions_2indep

from segone.campaigns.holdouts import (
    GLOBAL,
    HOLDOUT,
    TREATMENT,
    HoldoutError,
    HoldoutSettings,
    assign,
    bucket,
    buckets,
    expected_shares,
    srm,
)
from segone.campaigns.measure import (
    Conversion,
    GroupSums,
    cuped_diff,
    measure,
    proportion_lift,
    record_assignments,
)
from segone.store.duckdb import DuckDBWarehouse

ARMS = {"mass": 1.0, "segment": 1.0, "one": 2.0}


def _ids(n: int, prefix: str = "cus_") -> list[str]:
    return [f"{prefix}{i:06d}" for i in range(n)]


# -- holdouts --------------------------------------------------------------------------------
def test_bucket_is_blake2b_of_salt_and_id() -> None:
    import hashlib

    d = hashlib.blake2b(b"s:cus_1", digest_size=8).digest()
    assert bucket("s", "cus_1") == int.from_bytes(d, "big") / 2**64
    assert buckets("s", ["cus_1", "cus_2"]).tolist() == [bucket("s", "cus_1"), bucket("s", "cus_2")]


def test_same_groups_across_builds_and_after_a_merge() -> None:
    ids = _ids(5000)
    a = assign(ids, salt="campaign:x", holdout=0.1, arms=ARMS)
    # a rebuild: the same people in another order, plus newcomers
    rng = np.random.default_rng(0)
    rebuilt = list(rng.permutation(ids)) + _ids(500, "new_")
    b = assign(rebuilt, salt="campaign:x", holdout=0.1, arms=ARMS)
    before = dict(zip(a.customer_ids, zip(a.group, a.arm, strict=True), strict=True))
    after = dict(zip(b.customer_ids, zip(b.group, b.arm, strict=True), strict=True))
    assert all(after[c] == before[c] for c in ids)
    # a merge: cus_000001 absorbs cus_000002; the survivor keeps its own group and arm
    merged = [c for c in ids if c != "cus_000002"]
    m = assign(merged, salt="campaign:x", holdout=0.1, arms=ARMS)
    got = dict(zip(m.customer_ids, zip(m.group, m.arm, strict=True), strict=True))
    assert got["cus_000001"] == before["cus_000001"]
    assert all(got[c] == before[c] for c in merged)


def test_balance_and_independence_of_layers() -> None:
    ids = _ids(40_000)
    a = assign(ids, salt="campaign:y", holdout=0.2, arms=ARMS, settings=HoldoutSettings(0.05))
    test = srm(a.counts(), expected_shares(0.2, 0.05))
    assert not test.mismatch and test.p_value > 0.001
    shares = {k: v / len(ids) for k, v in a.counts().items()}
    assert abs(shares[GLOBAL] - 0.05) < 0.005
    assert abs(shares[HOLDOUT] - 0.95 * 0.2) < 0.01
    treated = a.arm[a.group == TREATMENT]
    one = np.mean(treated == "one")
    assert abs(one - 0.5) < 0.02
    # a covariate unrelated to the id is balanced between groups (hash ⟂ person)
    x = np.random.default_rng(1).gamma(2.0, 50.0, len(ids))
    t, h = x[a.group == TREATMENT], x[a.group == HOLDOUT]
    se = np.sqrt(t.var() / len(t) + h.var() / len(h))
    assert abs(t.mean() - h.mean()) < 4 * se
    # the global control is the same whatever the campaign
    b = assign(ids, salt="campaign:z", holdout=0.5, arms={"a": 1.0})
    assert ((a.group == GLOBAL) == (b.group == GLOBAL)).all()


def test_srm_flags_a_broken_split_and_bad_shares_are_refused() -> None:
    ids = _ids(20_000)
    a = assign(ids, salt="c", holdout=0.1, arms={"a": 1.0})
    counts = a.counts()
    counts[TREATMENT] = int(counts[TREATMENT] * 0.9)  # 10% of treated lost by a bug
    assert srm(counts, expected_shares(0.1, 0.05)).mismatch
    with pytest.raises(HoldoutError):
        assign(ids, salt="c", holdout=1.0, arms={"a": 1.0})
    with pytest.raises(HoldoutError):
        assign(ids, salt="c", holdout=0.1, arms={})
    with pytest.raises(HoldoutError):
        HoldoutSettings(global_control=1.5)


# -- statistics -------------------------------------------------------------------------------
def test_intervals_match_statsmodels() -> None:
    d, (lo, hi), r, (rl, rh) = proportion_lift(60, 1000, 40, 1000)
    elo, ehi = confint_proportions_2indep(60, 1000, 40, 1000, method="newcomb", compare="diff")
    rlo, rhi = confint_proportions_2indep(60, 1000, 40, 1000, method="log", compare="ratio")
    assert (lo, hi) == pytest.approx((elo, ehi))
    assert (rl, rh) == pytest.approx((rlo, rhi))
    assert d == pytest.approx(0.02) and r == pytest.approx(1.5)


def test_coverage_of_95_percent_intervals_with_known_true_lift() -> None:
    """Many simulated campaigns with a known true lift: the intervals cover it 93–97%."""
    rng = np.random.default_rng(2026)
    sims = 2000
    n_t, n_c = 3000, 600
    p_c = rng.uniform(0.02, 0.2, sims)
    p_t = p_c + rng.uniform(-0.01, 0.05, sims)
    c_t, c_c = rng.binomial(n_t, p_t), rng.binomial(n_c, p_c)
    _, (lo, hi), _, (rl, rh) = proportion_lift(c_t, n_t, c_c, n_c)
    diff_cover = np.mean((lo <= p_t - p_c) & (p_t - p_c <= hi))
    ratio_cover = np.mean((rl <= p_t / p_c) & (p_t / p_c <= rh))
    assert 0.93 <= diff_cover <= 0.97, diff_cover
    assert 0.93 <= ratio_cover <= 0.97, ratio_cover
    # revenue per person with CUPED (skewed revenue correlated with pre-period spend)
    covered = 0
    reductions = []
    runs = 400
    for _ in range(runs):
        eff = rng.uniform(0, 5)

        def group(n: int, effect: float) -> GroupSums:
            x = rng.gamma(0.8, 60.0, n)
            y = 0.7 * x + rng.gamma(0.8, 40.0, n) + effect * (rng.random(n) < 0.5) * 2
            return GroupSums(n, 0, y.sum(), (y * y).sum(), x.sum(), (x * x).sum(), (x * y).sum())

        r = cuped_diff(group(n_t, eff), group(n_c, 0.0))
        covered += r["low"] <= eff <= r["high"]
        reductions.append(r["variance_reduction"])
    assert 0.93 <= covered / runs <= 0.97, covered / runs
    assert np.mean(reductions) > 0.3  # pre-period spend explains much of the variance


# -- the warehouse join -----------------------------------------------------------------------
def test_measure_joins_assignments_and_orders_in_the_warehouse(tmp_path: Path) -> None:
    wh = DuckDBWarehouse(tmp_path / "w.duckdb")
    wh.ensure_tables()
    at = datetime(2025, 1, 1, tzinfo=UTC)
    ids = _ids(4000)
    a = assign(ids, salt="campaign:m", holdout=0.2, arms={"a": 1.0, "b": 1.0})
    record_assignments(
        wh, campaign="m", run_id="r1", channel="email", at=at,
        customer_ids=ids, groups=list(a.group), arms=list(a.arm),
    )  # fmt: skip
    rng = np.random.default_rng(3)
    rate = {TREATMENT: 0.12, HOLDOUT: 0.06, GLOBAL: 0.06}
    orders, truth = [], {}
    for k, c in enumerate(ids):
        g = str(a.group[k])
        conv = rng.random() < rate[g]
        truth[c] = conv
        if conv:
            orders.append((f"o{k}", c, at + timedelta(days=3), 50.0))
        if rng.random() < 0.3:  # before the campaign: pre-period spend only
            orders.append((f"p{k}", c, at - timedelta(days=30), 80.0))
        if rng.random() < 0.1:  # after the window: not attributed
            orders.append((f"late{k}", c, at + timedelta(days=40), 70.0))
    wh.insert(
        "orders",
        ibis.memtable(
            pa.table(
                {
                    "order_id": [o[0] for o in orders],
                    "ts": pa.array([o[2] for o in orders], pa.timestamp("us", tz="UTC")),
                    "amount": [o[3] for o in orders],
                }
            )
        ),
    )
    wh.insert(
        "record_customers",
        ibis.memtable(
            pa.table(
                {
                    "record_table": ["orders"] * len(orders),
                    "record_key": [o[0] for o in orders],
                    "customer_id": [o[1] for o in orders],
                }
            )
        ),
    )
    rep = measure(
        wh, "m", Conversion("order"), arms=["a", "b"],
        expected=expected_shares(0.2, 0.05), window_days=14,
    )  # fmt: skip
    for arm in rep.arms:
        treated = [c for k, c in enumerate(ids) if a.group[k] == TREATMENT and a.arm[k] == arm.arm]
        assert arm.treated == len(treated)
        assert arm.conversions == sum(truth[c] for c in treated)
        assert arm.revenue_per_person == pytest.approx(50.0 * arm.conversions / arm.treated)
        assert arm.lift_ci[0] < 0.06 < arm.lift_ci[1] or arm.lift_ci[0] > 0
        assert arm.relative_lift is not None
    assert rep.srm["mismatch"] is False
    assert rep.to_dict()["arms"][0]["lift_ci"][0] is not None
    assert rep.control["people"] == int(np.sum(a.group != TREATMENT))


def test_too_small_sample_is_said() -> None:
    from segone.campaigns.measure import compare

    r = compare("a", GroupSums(200, 12), GroupSums(50, 2))
    assert r.warning and "sample too small" in r.warning
    big = compare("a", GroupSums(50_000, 6000), GroupSums(50_000, 3000))
    assert big.warning is None and big.lift_ci[0] > 0

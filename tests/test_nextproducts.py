"""Next-product recommendations: exact rules on hand-made baskets, fallbacks, and a real sample."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import ibis
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from threadpoolctl import threadpool_limits

from segone.exceptions import SegoneError
from segone.identity import IdentitySettings, resolve
from segone.ingest import ingest_file
from segone.models.nextproducts import (
    RECOMMENDATIONS_SCHEMA,
    NextProducts,
    NextProductsError,
    NotFittedError,
    baskets,
    item_rules,
    popularity,
    purchase_lines,
    ranking_metrics,
)
from segone.profiles import features as F
from segone.schema import TS
from segone.store.duckdb import DuckDBWarehouse

AS_OF = datetime(2024, 2, 1, tzinfo=UTC)


def _t(day: int, month: int = 1) -> datetime:
    return datetime(2024, month, day, 12, tzinfo=UTC)


# order, customer, day, status, lines as (product, quantity, returned)
ORDERS = [
    ("o1", "c1", 1, "completed", [("A", 1, 0), ("B", 1, 0)]),
    ("o2", "c2", 2, "partially_returned", [("A", 1, 0), ("B", 1, 0), ("C", 2, 1)]),
    ("o3", "c3", 3, "completed", [("A", 1, 0), ("C", 1, 0)]),
    ("o4", "c4", 4, "partially_returned", [("B", 1, 0), ("D", 2, 2)]),  # D sent back
    ("o5", "c5", 5, "cancelled", [("C", 1, 0)]),  # never a purchase
    ("o6", "c5", 6, "completed", [("D", 1, 0)]),
    ("o7", "c3", 40, "completed", [("E", 1, 0)]),  # after AS_OF
]


@pytest.fixture(scope="module")
def hand():
    wh = DuckDBWarehouse(":memory:")
    wh.ensure_tables()
    when = {o: _t(d) if d <= 31 else _t(d - 31, 2) for o, _, d, _, _ in ORDERS}
    wh.insert(
        "orders",
        ibis.memtable(
            pd.DataFrame(
                {
                    "order_id": [o[0] for o in ORDERS],
                    "ts": [when[o[0]] for o in ORDERS],
                    "status": [o[3] for o in ORDERS],
                }
            )
        ),
    )
    lines = [(o, i + 1, p, q, r) for o, _, _, _, ls in ORDERS for i, (p, q, r) in enumerate(ls)]
    wh.insert(
        "order_lines",
        ibis.memtable(
            pd.DataFrame(
                lines,
                columns=["order_id", "line_number", "product_id", "quantity", "returned_quantity"],
            )
        ),
    )
    wh.insert(
        "record_customers",
        ibis.memtable(
            pd.DataFrame(
                {
                    "record_table": "orders",
                    "record_key": [o[0] for o in ORDERS],
                    "customer_id": [o[1] for o in ORDERS],
                }
            )
        ),
    )
    yield wh
    wh.close()


def _rules(wh, **kw) -> dict[tuple[str, str], tuple[int, float, float, float]]:
    b = baskets(purchase_lines(wh), as_of=AS_OF)
    df = wh.execute(item_rules(b, **kw))
    return {
        (r.antecedent, r.consequent): (r.customers, r.support, r.confidence, r.lift)
        for r in df.itertuples()
    }


def test_baskets_count_kept_products_only(hand):
    got = wh_rows(hand, baskets(purchase_lines(hand), as_of=AS_OF))
    # c4 returned D, c5 cancelled C, E was bought after AS_OF; c2 kept one of two C
    assert got == {
        ("c1", "A"): 1,
        ("c1", "B"): 1,
        ("c2", "A"): 1,
        ("c2", "B"): 1,
        ("c2", "C"): 1,
        ("c3", "A"): 1,
        ("c3", "C"): 1,
        ("c4", "B"): 1,
        ("c5", "D"): 1,
    }


def wh_rows(wh, expr) -> dict[tuple[str, str], int]:
    df = wh.execute(expr)
    return {(r.customer_id, r.product_id): r.units for r in df.itertuples()}


def _same(got: dict, expected: dict) -> None:
    assert set(got) == set(expected)
    for k, v in expected.items():
        assert got[k] == pytest.approx(v), k


def test_rules_support_confidence_lift_exact(hand):
    # 5 customers own something: A by 3, B by 3, C by 2, D by 1; A+B by 2, A+C by 2, B+C by 1
    _same(
        _rules(hand, min_customers=2),
        {
            ("A", "B"): (2, 2 / 5, 2 / 3, 10 / 9),
            ("B", "A"): (2, 2 / 5, 2 / 3, 10 / 9),
            ("A", "C"): (2, 2 / 5, 2 / 3, 5 / 3),
            ("C", "A"): (2, 2 / 5, 1.0, 5 / 3),
        },
    )
    loose = _rules(hand, min_customers=1)
    assert loose[("B", "C")] == pytest.approx((1, 1 / 5, 1 / 3, 5 / 6))
    assert loose[("C", "B")] == pytest.approx((1, 1 / 5, 1 / 2, 5 / 6))
    assert set(_rules(hand, min_customers=1, min_support=0.3)) == set(loose) - {
        ("B", "C"),
        ("C", "B"),
    }
    assert set(_rules(hand, min_customers=1, min_confidence=0.9)) == {("C", "A")}


def test_popularity_overall_and_by_segment(hand):
    b = baskets(purchase_lines(hand), as_of=AS_OF)
    overall = hand.execute(popularity(b))
    assert dict(zip(overall.product_id, overall.customers, strict=True)) == {
        "A": 3,
        "B": 3,
        "C": 2,
        "D": 1,
    }
    seg = ibis.memtable({"customer_id": ["c4", "c5"], "segment": ["s2", "s2"]})
    by = hand.execute(popularity(b, seg))
    assert sorted(zip(by.segment, by.product_id, by.customers, strict=True)) == [
        ("s2", "B", 1),
        ("s2", "D", 1),
    ]


def _fit(wh, **kw) -> NextProducts:
    kw.setdefault("half_life_days", None)
    kw.setdefault("random_state", 0)
    seg = kw.pop("segments", None)
    return NextProducts(**kw).fit(wh, purchase_lines(wh), as_of=AS_OF, segments=seg)


def _recs(model: NextProducts, who: list[str], n: int = 10) -> pd.DataFrame:
    return model.recommend(who, n=n).to_pandas()


def test_cooccurrence_recommends_with_reason_and_skips_owned(hand):
    model = _fit(hand, k0=0.0, als_share=0.0)
    r = _recs(model, ["c4"])
    # c4 kept B and returned D: neither comes back; A follows B (confidence 2/3), and C has no
    # rule from B (one customer only), so it is filled in from popularity with score 0
    assert r.product_id.tolist() == ["A", "C"]
    assert r["rank"].tolist() == [1, 2]
    assert r.source.tolist() == ["cooccurrence", "popular"]
    assert r.reason.tolist() == ["because you bought B", "popular"]
    assert r.score.tolist() == pytest.approx([1.0, 0.0])
    # a cancelled order is not a purchase: c5 can still be offered C
    assert "C" in _recs(model, ["c5"]).product_id.tolist()
    assert "D" not in _recs(model, ["c5"]).product_id.tolist()


def test_blend_weights_personal_history_by_how_much_was_bought(hand):
    # k0 = 1: one owned product gives the personal score half the weight
    r = _recs(_fit(hand, k0=1.0, als_share=0.0), ["c4"])
    # A: 0.5 * 1 (co-occurrence) + 0.5 * 1 (most popular left); C: 0.5 * popularity 2/3
    assert r.product_id.tolist() == ["A", "C"]
    assert r.score.tolist() == pytest.approx([1.0, 1 / 3])
    assert r.source.tolist() == ["cooccurrence", "popular"]


def test_new_customer_gets_global_popularity(hand):
    r = _recs(_fit(hand), ["never-seen"], n=3)
    assert r.product_id.tolist() == ["A", "B", "C"]  # A and B tie on 3 owners: by id
    assert r.score.tolist() == pytest.approx([1.0, 1.0, 2 / 3])
    assert set(r.source) == {"popular"} and set(r.reason) == {"popular"}


def test_segment_popularity_then_global(hand):
    seg = ibis.memtable(
        {
            "customer_id": ["c1", "c2", "c3", "c4", "c5", "c6"],
            "tier": ["s1", "s1", "s1", "s2", "s2", "s2"],
        }
    )
    # c6 bought nothing; in s2, c4 owns B and c5 owns D
    own = _recs(
        _fit(hand, k0=math.inf, segment_column="tier", segment_prior=0.0, segments=seg), ["c6"]
    )
    assert own.product_id.tolist() == ["B", "D"]
    assert set(own.source) == {"segment_popular"}
    assert set(own.reason) == {"popular in your segment (tier = s2)"}
    # shrunk toward the global shares (A .6, B .6, C .4, D .2) with 2 pseudo-customers:
    # (segment owners + 2 * share) / (2 buyers + 2)
    model = _fit(hand, k0=math.inf, segment_column="tier", segment_prior=2.0, segments=seg)
    r = _recs(model, ["c6"])
    assert r.product_id.tolist() == ["B", "D", "A", "C"]
    assert r.score.tolist() == pytest.approx(np.array([0.55, 0.35, 0.3, 0.2]) / 0.55)
    # someone outside every segment still gets the global order
    assert _recs(model, ["stranger"]).source.unique().tolist() == ["popular"]


def test_unfitted_and_invalid_use(hand):
    with pytest.raises(NotFittedError, match="fit"):
        NextProducts().recommend(["c1"])
    assert issubclass(NotFittedError, SegoneError) and issubclass(NextProductsError, SegoneError)
    with pytest.raises(NextProductsError, match="k0"):
        NextProducts(k0=-1.0).fit(hand, purchase_lines(hand), as_of=AS_OF)
    with pytest.raises(NextProductsError, match="segment_column"):
        NextProducts().fit(hand, purchase_lines(hand), segments=ibis.memtable({"x": [1]}))
    with pytest.raises(NextProductsError, match="no column 'tier'"):
        NextProducts(segment_column="tier").fit(
            hand, purchase_lines(hand), segments=ibis.memtable({"customer_id": ["c1"]})
        )
    fitted = _fit(hand)
    with pytest.raises(NextProductsError, match="n=0"):
        fitted.recommend(["c1"], n=0)
    model = NextProducts(factors=8, k0=5.0)
    assert clone(model).get_params()["k0"] == 5.0  # hyperparameters are stored unchanged


def test_ranking_metrics_exact():
    recs = pd.DataFrame(
        {"customer_id": ["u"] * 3, "rank": [1, 2, 3], "product_id": ["x", "y", "z"]}
    )
    truth = pd.DataFrame({"customer_id": ["u", "u", "v"], "product_id": ["y", "w", "x"]})
    m = ranking_metrics(recs, truth, k=2).set_index("customer_id")
    assert m.loc["u", "hit"] == 1.0 and m.loc["u", "recall"] == 0.5
    assert m.loc["u", "ndcg"] == pytest.approx((1 / np.log2(3)) / (1 + 1 / np.log2(3)))
    assert m.loc["v"].tolist()[1:] == [0.0, 0.0, 0.0]  # nothing recommended to v


# -- on a generated store ---------------------------------------------------------------------
CUTOFF = datetime(2024, 7, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def sample(small_sample):
    out, _ = small_sample
    wh = DuckDBWarehouse(":memory:")
    wh.ensure_tables()
    # orders alone are enough to resolve buyers (deterministically: no Splink, to stay fast)
    ingest_file(wh, "orders", out / "data" / "orders.csv")
    resolve(wh, IdentitySettings(probabilistic=False))
    yield wh
    wh.close()


def test_sample_blend_beats_global_popularity(sample):
    wh = sample
    train = purchase_lines(wh, as_of=CUTOFF)
    after = baskets(purchase_lines(wh, since=CUTOFF), as_of=datetime(2100, 1, 1, tzinfo=UTC))
    truth = wh.execute(
        after.select("customer_id", "product_id").anti_join(
            train.select("customer_id", "product_id"), ["customer_id", "product_id"]
        )
    )
    people = truth.customer_id.unique()
    assert len(people) > 300
    # a descriptive segment as of the cutoff: the category each person bought most (the
    # profile's top_category is the preference model's, which needs the whole build)
    cut = ibis.literal(CUTOFF, type=TS)
    orders = wh.table("orders")
    rc = wh.table("record_customers")
    orders = F.of(orders.filter(orders.ts <= cut), rc, "orders", "order_id")
    ln = wh.table("order_lines")
    ln = ln.filter(ln.category.notnull()).join(orders.select("order_id", "customer_id"), "order_id")
    n = ln.group_by(["customer_id", "category"]).aggregate(n=ln.quantity.sum())
    first = ibis.window(group_by="customer_id", order_by=[ibis.desc("n"), "category"])
    n = n.mutate(r=ibis.row_number().over(first))
    seg = n.filter(n.r == 0).select("customer_id", top_category="category")
    popular = NextProducts(k0=math.inf, random_state=0).fit(wh, train, as_of=CUTOFF)
    blend = NextProducts(segment_column="top_category", random_state=0)
    blend.fit(wh, train, as_of=CUTOFF, segments=seg)
    recs = blend.recommend(people)
    hit_pop = ranking_metrics(popular.recommend(people), truth).hit.mean()
    hit_blend = ranking_metrics(recs, truth).hit.mean()
    assert hit_blend > hit_pop + 0.02, (hit_blend, hit_pop)

    r = recs.to_pandas()
    assert recs.schema == RECOMMENDATIONS_SCHEMA
    assert set(r.source) == {"cooccurrence", "als", "segment_popular", "popular"}
    assert r.reason.str.len().gt(0).all()
    personal = r[r.source.isin(["cooccurrence", "als"])]
    assert personal.reason.str.match(r"because you bought P\d{5}(, P\d{5}){0,2}$").all()
    # the reasons name products the person owns, and nothing owned is recommended
    owned = wh.execute(train.select("customer_id", "product_id").distinct())
    owned_set = set(zip(owned.customer_id, owned.product_id, strict=True))
    assert not any((c, p) in owned_set for c, p in zip(r.customer_id, r.product_id, strict=True))
    for c, reason in zip(personal.customer_id, personal.reason, strict=True):
        assert all(
            (c, p) in owned_set for p in reason.removeprefix("because you bought ").split(", ")
        )
    assert (r.groupby("customer_id")["rank"].max() <= 10).all()


def test_sample_deterministic_and_als_explained_as_implicit(sample):
    wh = sample
    train = purchase_lines(wh, as_of=CUTOFF)
    a = NextProducts(random_state=3, factors=16).fit(wh, train, as_of=CUTOFF)
    b = NextProducts(random_state=3, factors=16).fit(wh, train, as_of=CUTOFF)
    ra, rb = a.recommend(), b.recommend()
    assert ra.equals(rb)
    assert np.array_equal(a.item_factors_, b.item_factors_)
    other = NextProducts(random_state=4, factors=16).fit(wh, train, as_of=CUTOFF)
    assert not np.array_equal(a.item_factors_, other.item_factors_)

    # our per-product contributions are implicit's explain (Hu, Koren & Volinsky, section 5)
    from implicit.cpu.als import AlternatingLeastSquares

    r = ra.to_pandas()
    row = r[r.source == "als"].iloc[0]
    u = int(np.searchsorted(a.customers_, row.customer_id))
    i = int(np.searchsorted(a.items_, row.product_id))
    with threadpool_limits(limits=1, user_api="blas"):
        ref = AlternatingLeastSquares(factors=16, regularization=a.regularization, alpha=1.0)
    ref.item_factors, ref.user_factors = a.item_factors_, a.user_factors_
    total, top, _ = ref.explain(u, a.confidence_weights_, i, N=100)
    mine = a.als_contributions(row.customer_id, row.product_id)
    assert sum(mine.values()) == pytest.approx(total, rel=1e-4)
    assert {a.items_[j]: s for j, s in top} == pytest.approx(mine, rel=1e-4, abs=1e-7)
    # and the reason names the strongest of them
    best = max(mine, key=lambda p: mine[p])
    assert row.reason.removeprefix("because you bought ").split(", ")[0] == best

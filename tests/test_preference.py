"""Item preferences (Dirichlet-multinomial shrinkage) and how ``decide`` ranks with them."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from segone.decisions import CatalogueIndex, DecisionSettings, decide
from segone.exceptions import DecisionError
from segone.models.preference import ItemPreferences, PreferenceError, dirichlet_mle

NOW = datetime(2024, 6, 1, 12, tzinfo=UTC)
DAY = 86_400.0
S = DecisionSettings()


def _occasions(rng: np.random.Generator, alpha: np.ndarray, people: int) -> pd.DataFrame:
    """Each person draws their own shares from Dirichlet(alpha), then 1-12 weekly choices."""
    rows = []
    for c in range(people):
        p = rng.dirichlet(alpha)
        for k in range(int(rng.integers(1, 13))):
            rows.append((f"c{c}", f"i{rng.choice(len(alpha), p=p)}", (k * 7.0) * DAY))
    return pd.DataFrame(rows, columns=["customer_id", "product_id", "t"])


def _occasions_fixed(
    rng: np.random.Generator, alpha: np.ndarray, people: int, n: int
) -> pd.DataFrame:
    rows = []
    for c in range(people):
        p = rng.dirichlet(alpha)
        rows += [(f"c{c}", f"i{rng.choice(len(alpha), p=p)}", k * 7 * DAY) for k in range(n)]
    return pd.DataFrame(rows, columns=["customer_id", "product_id", "t"])


def test_dirichlet_mle_recovers_the_population_concentration() -> None:
    rng = np.random.default_rng(0)
    alpha = np.array([2.0, 1.0, 0.5, 0.5])
    df = _occasions(rng, alpha, 3000)
    c = pd.factorize(df.customer_id)[0]
    i = df.product_id.str[1:].astype(int).to_numpy()
    a = dirichlet_mle(c, i, np.ones(len(df)), c.max() + 1, 4)
    assert a.sum() == pytest.approx(alpha.sum(), rel=0.15)
    assert a / a.sum() == pytest.approx(alpha / alpha.sum(), abs=0.02)


def test_probabilities_shrink_to_everyone_and_are_never_zero() -> None:
    rng = np.random.default_rng(1)
    df = _occasions(rng, np.array([1.0, 1.0, 0.3, 0.3]), 800)
    # someone who bought i0 eight times, and someone new
    extra = pd.DataFrame(
        {"customer_id": ["loyal"] * 8, "product_id": ["i0"] * 8, "t": np.arange(8) * 7 * DAY}
    )
    m = ItemPreferences().fit_frame(pd.concat([df, extra], ignore_index=True))
    loyal = m.probabilities("loyal")
    new = m.probabilities("nobody")
    assert sum(loyal.values()) == pytest.approx(1.0)
    assert min(loyal.values()) > 0 and min(new.values()) > 0
    # their own history dominates, but not to certainty; a newcomer gets everyone's shares
    assert 0.7 < loyal["i0"] < 1.0
    share = (m.prior_ / m.prior_.sum()).tolist()
    assert [new[x] for x in m.items_] == pytest.approx(share)
    # an item named by a decision but never bought by anyone still has a chance
    assert m.probabilities("loyal", ["i0", "unseen"])["unseen"] > 0
    t = m.table().to_pandas()
    assert set(t.columns) == {"customer_id", "product_id", "weight", "probability"}
    assert (t.probability > 0).all() and (t.probability < 1).all()


def test_half_life_is_learned_in_the_persons_own_purchase_cycles() -> None:
    rng = np.random.default_rng(2)
    rows = []
    for c in range(400):
        gap = [3.0, 30.0][c % 2]  # two rhythms: the half-life is counted in purchases
        old, new = rng.choice(4, size=2, replace=False)
        for k in range(16):  # tastes switch halfway: recent purchases predict better
            item = old if k < 8 else new
            if rng.random() < 0.15:
                item = rng.integers(4)
            rows.append((f"c{c}", f"i{item}", k * gap * DAY))
    df = pd.DataFrame(rows, columns=["customer_id", "product_id", "t"])
    m = ItemPreferences().fit_frame(df)
    assert m.half_life_cycles_ <= 4
    # each person's rhythm, shrunk a little toward everyone's median (2 of 17 gaps' worth)
    assert m.rhythm_days_.min() == pytest.approx(3.0, rel=0.25)
    assert m.rhythm_days_.max() == pytest.approx(30.0, rel=0.25)
    # stable tastes (each person's own shares, drawn once): long memory wins
    stable = _occasions_fixed(np.random.default_rng(3), np.array([1.0, 1.0, 0.3, 0.3]), 400, 16)
    assert ItemPreferences().fit_frame(stable).half_life_cycles_ >= 16


def test_repurchase_is_learned_per_item() -> None:
    rows = []
    for c in range(60):
        rows += [(f"c{c}", "coffee", k * 10 * DAY) for k in range(4)]
        rows.append((f"c{c}", "grinder", 5 * DAY))  # bought once, never again
    m = ItemPreferences().fit_frame(pd.DataFrame(rows, columns=["customer_id", "product_id", "t"]))
    got = m.item_params()
    assert got["coffee"]["buy_again"] and got["coffee"]["repurchase"] > 0.9
    assert not got["grinder"]["buy_again"] and got["grinder"]["repurchase"] < 0.1


def test_invalid_input_is_refused() -> None:
    with pytest.raises(PreferenceError, match="no purchases"):
        ItemPreferences().fit_frame(pd.DataFrame(columns=["customer_id", "product_id", "t"]))
    with pytest.raises(PreferenceError, match="half_lives"):
        ItemPreferences(half_lives=(0.0,)).fit_frame(
            pd.DataFrame({"customer_id": ["a"], "product_id": ["x"], "t": [0.0]})
        )


# -- decide with the model ---------------------------------------------------------------------
def _shop() -> tuple[CatalogueIndex, dict]:
    cat = {
        "yo": {
            "name": "Yoplait",
            "price": 10.0,
            "popularity": 0.4,
            "preference_prior": 0.5,
            "repurchase": 0.9,
            "buy_again": True,
        },
        "da": {
            "name": "Dannon",
            "price": 8.0,
            "popularity": 0.3,
            "preference_prior": 0.4,
            "repurchase": 0.8,
            "buy_again": True,
        },
        "hi": {
            "name": "Hiland",
            "price": 6.0,
            "popularity": 0.05,
            "preference_prior": 0.05,
            "repurchase": 0.5,
            "buy_again": True,
        },
        "mixer": {
            "name": "Stand mixer",
            "price": 300.0,
            "popularity": 0.2,
            "preference_prior": 0.2,
            "repurchase": 0.01,
            "buy_again": False,
        },
    }
    published = {
        "preferences": {"da": 6.0, "yo": 1.0, "mixer": 1.0},
        "owned": ["da", "yo", "mixer"],
    }
    return CatalogueIndex(cat), published


def _decide(published: dict, ctx: dict, cat: CatalogueIndex) -> dict:
    rng = np.random.default_rng(0)
    return decide({}, published, ctx, cat, {}, None, S, NOW, rng).response()


def test_decide_ranks_by_the_persons_choice_probability_and_offers_their_usual_again() -> None:
    cat, published = _shop()
    r = _decide(published, {"placement": "shelf", "limit": 4, "follow_up": False}, cat)
    items = {i["id"]: i for i in r["items"]}
    # the durable they own is not offered again; the yogurts they buy are
    assert set(items) == {"yo", "da", "hi"}
    best = max(r["items"], key=lambda i: i["score"])
    assert best["id"] == "da" and best["name"] == "Dannon"
    assert best["reasons"][0].startswith("your usual choice")
    p = {k: v["probability"] for k, v in items.items()}
    assert sum(p.values()) == pytest.approx(1.0)
    # (6 + 0.4) / (6 + 0.4 + 1 + 0.5 + 0.05)
    assert p["da"] == pytest.approx(6.4 / 7.95)
    assert min(p.values()) > 0
    # a decision may still ask for everything they bought to be left out, or kept
    r = _decide(published, {"placement": "shelf", "exclude_bought": True}, cat)
    assert [i["id"] for i in r["items"]] == ["hi"]
    r = _decide(published, {"placement": "shelf", "exclude_bought": False, "limit": 4}, cat)
    assert {i["id"] for i in r["items"]} == {"yo", "da", "hi", "mixer"}


def test_price_and_promotion_at_decision_time_move_the_probabilities() -> None:
    cat, published = _shop()
    plain = ["yo", "da", "hi"]
    base = _decide(published, {"placement": "shelf", "candidates": plain, "limit": 3}, cat)
    offers = [
        {"id": "yo", "price": 6.0, "feature": True},  # 40% off and in the paper
        {"id": "da", "price": 8.0},
        {"id": "hi"},
    ]
    deal = _decide(published, {"placement": "shelf", "candidates": offers, "limit": 3}, cat)
    pb = {i["id"]: i["probability"] for i in base["items"]}
    pd_ = {i["id"]: i for i in deal["items"]}
    assert pd_["yo"]["probability"] > 3 * pb["yo"]
    assert pd_["da"]["probability"] < pb["da"]
    assert "40% below its usual price" in pd_["yo"]["reasons"]
    assert "on promotion" in pd_["yo"]["reasons"]
    # the elasticity: odds x 0.6 ** -2.62 x e ** 0.5 against an unchanged item
    odds = (pd_["yo"]["probability"] / pd_["hi"]["probability"]) / (pb["yo"] / pb["hi"])
    assert odds == pytest.approx(0.6**-2.62 * math.exp(0.5), rel=1e-6)


def test_without_a_preference_model_decide_behaves_as_before() -> None:
    cat, published = _shop()
    learned = ("preference_prior", "repurchase", "buy_again")
    bare = CatalogueIndex(
        {i: {k: v for k, v in d.items() if k not in learned} for i, d in cat.items()}
    )
    # no build has learned what is bought again: everything they bought is left out
    r = _decide(published, {"placement": "shelf", "limit": 4}, bare)
    assert [i["id"] for i in r["items"]] == ["hi"]
    assert r["items"][0]["probability"] is None
    # a catalogue that learned it but a person without preferences: the old priors rank
    r = _decide({"owned": ["da"]}, {"placement": "shelf", "limit": 4}, cat)
    assert "da" in {i["id"] for i in r["items"]}
    assert all(i["probability"] is None for i in r["items"])


def test_several_items_in_one_order_are_one_occasion_each() -> None:
    df = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "b", "b", "c"],
            "product_id": ["x", "y", "x", "x", "z", "y"],
            "t": [0.0, 0.0, 7 * DAY, 0.0, 0.0, 3 * DAY],
        }
    )
    m = ItemPreferences().fit_frame(df)
    t = m.table().to_pandas().set_index(["customer_id", "product_id"])
    assert t.loc[("a", "x"), "weight"] > t.loc[("a", "y"), "weight"] > 0
    assert set(t.index) == {("a", "x"), ("a", "y"), ("b", "x"), ("b", "z"), ("c", "y")}


def test_without_repeat_buyers_there_is_no_decay_and_the_fitted_prior() -> None:
    df = pd.DataFrame(
        {"customer_id": ["a", "b", "c", "d"], "product_id": ["x", "x", "y", "z"], "t": [0.0] * 4}
    )
    m = ItemPreferences().fit_frame(df)
    assert math.isinf(m.half_life_cycles_) and m.prior_scale_ == 1.0
    assert m.validation_log_loss_ == {}
    assert min(m.probabilities("a").values()) > 0


def test_person_weights_are_the_fits_weights() -> None:
    from segone.models.preference import person_weights

    df = _occasions_fixed(np.random.default_rng(4), np.array([1.0, 0.5, 0.5]), 60, 8)
    m = ItemPreferences().fit_frame(df)
    got = person_weights(df, m.half_life_cycles_).set_index(["customer_id", "product_id"])
    want = m.table().to_pandas().set_index(["customer_id", "product_id"])
    assert got.weight.sort_index().to_numpy() == pytest.approx(want.weight.sort_index().to_numpy())


def test_exclude_bought_per_category_overrides_what_was_learned() -> None:
    cat, published = _shop()
    docs = {i: dict(cat[i]) for i in cat}
    for i in ("yo", "da", "hi"):
        docs[i]["category"] = "Food > Yogurt"
    docs["mixer"]["category"] = "Home > Kitchen"
    idx = CatalogueIndex(docs)
    ctx = {"placement": "shelf", "limit": 4, "follow_up": False}
    # the learned default: yogurts again, not the mixer
    r = _decide(published, ctx, idx)
    assert {i["id"] for i in r["items"]} == {"yo", "da", "hi"}
    assert {i["category"] for i in r["items"]} == {"Food > Yogurt"}
    # a shop that never re-offers food it sold, and does re-offer kitchen goods
    r = _decide(published, {**ctx, "exclude_bought": {"Food": True, "Home > Kitchen": False}}, idx)
    assert {i["id"] for i in r["items"]} == {"hi", "mixer"}
    # a category not named keeps the learned default
    r = _decide(published, {**ctx, "exclude_bought": {"Home": False}}, idx)
    assert {i["id"] for i in r["items"]} == {"yo", "da", "hi", "mixer"}
    with pytest.raises(DecisionError, match="category: true/false"):
        _decide(published, {**ctx, "exclude_bought": {"Food": "yes"}}, idx)


def test_people_who_keep_to_their_categories_get_the_nested_model() -> None:
    # 6 categories of 8 items; each person keeps to one category and picks within it as
    # everyone does (the same skewed shares): the nested model says so, the flat one cannot
    rng = np.random.default_rng(4)
    within = np.array([0.35, 0.2, 0.15, 0.1, 0.08, 0.06, 0.04, 0.02])
    rows = []
    for c in range(400):
        cat = int(rng.integers(6))
        for k in range(int(rng.integers(2, 9))):
            rows.append((f"c{c}", f"k{cat}-{rng.choice(8, p=within)}", k * 7.0 * DAY))
    df = pd.DataFrame(rows, columns=["customer_id", "product_id", "t"])
    cats = {f"k{c}-{j}": f"Cat {c}" for c in range(6) for j in range(8)}
    m = ItemPreferences().fit_frame(df, categories=cats)
    assert m.nested_
    assert m.nested_validation_log_loss_ is not None
    flat = m.validation_log_loss_[(m.half_life_cycles_, m.prior_scale_)]
    assert m.nested_validation_log_loss_ < flat
    params = m.item_params()
    assert {"category_prior", "category_total", "within_prior", "within_total"} <= set(
        params["k0-0"]
    )
    # decide: a person who bought only in Cat 2 is offered Cat 2's favourite they never bought
    docs = {i: {**p, "name": i, "category": cats[i]} for i, p in params.items()}
    idx = CatalogueIndex(docs)
    published = {"preferences": {"k2-3": 2.0}, "owned": ["k2-3"]}
    r = _decide(published, {"placement": "shelf", "limit": 3, "follow_up": False}, idx)
    top = max(r["items"], key=lambda i: i["probability"])
    assert top["category"] == "Cat 2"
    # against the flat model on the same fit: Cat 2's favourite, never bought, is far more
    # likely for this person when their category counts
    flat_docs = {
        i: {k: v for k, v in d.items() if not k.startswith(("category_", "within_"))}
        for i, d in docs.items()
    }
    every = {"placement": "shelf", "limit": 48, "follow_up": False}
    p_nested = {i["id"]: i["probability"] for i in _decide(published, every, idx)["items"]}
    p_flat = {
        i["id"]: i["probability"]
        for i in _decide(published, every, CatalogueIndex(flat_docs))["items"]
    }
    assert p_nested["k2-0"] > 2 * p_flat["k2-0"]
    assert p_nested["k4-0"] < p_flat["k4-0"]

"""The decision layer (segone.decisions): Thompson sampling with logged propensities, the
reward definition, exclusions, channel choice, and that the policy learns from feedback."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from segone.decisions import (
    CatalogueIndex,
    DecisionError,
    DecisionSettings,
    Prior,
    apply_channel_delta,
    channel_key,
    choose_channel,
    decide,
    decision_keys,
    feedback_deltas,
    key_lists,
    keys_for,
    rank,
    thompson,
    update,
)
from segone.exceptions import SegoneError

NOW = datetime(2024, 5, 1, 12, tzinfo=UTC)
S = DecisionSettings()


def catalogue(n: int = 40, popularity: bool = True) -> dict[str, dict[str, Any]]:
    cats = ["Home > Kitchen > Pans", "Home > Garden > Tools", "Sports > Running > Shoes"]
    return {
        f"P{i:03d}": {"name": f"item {i}", "category": cats[i % 3]}
        | ({"popularity": 100.0} if popularity else {})
        for i in range(n)
    }


def add(stats: dict[str, tuple[float, float]], deltas: dict[str, tuple[float, float]]) -> None:
    for k, (s, t) in deltas.items():
        s0, t0 = stats.get(k, (0.0, 0.0))
        stats[k] = (s0 + s, t0 + t)


# --- keys and the reward definition ---------------------------------------------------------


def test_keys_never_collide_and_match_the_batch_form() -> None:
    a = keys_for("home|x", "at_risk", "P1")
    b = keys_for("home", "x|at_risk", "P1")
    assert len(set(a + b)) == 4
    assert keys_for("home", "new", "P%7C") != keys_for("home", "new", "P|")
    glob, grp = key_lists("home", "new", ["P1", "P|2"])
    assert [glob[1], grp[1]] == keys_for("home", "new", "P|2")


@pytest.mark.parametrize(
    ("kind", "recorded", "delta"),
    [
        ("impression", (), (0.0, 1.0)),
        ("impression", ("impression",), (0.0, 0.0)),
        ("click", ("impression",), (1.0, 0.0)),
        ("click", (), (1.0, 1.0)),  # a click without its impression brings the trial
        ("click", ("impression", "click"), (0.0, 0.0)),
        ("conversion", ("impression", "click"), (0.0, 0.0)),  # counted once with the click
        ("conversion", ("impression",), (1.0, 0.0)),  # without a click it counts
        ("conversion", (), (1.0, 1.0)),
        ("click", ("conversion",), (0.0, 0.0)),
        ("impression", ("click",), (0.0, 0.0)),
    ],
)
def test_reward_definition(kind: str, recorded: tuple[str, ...], delta: tuple) -> None:
    assert update(kind, recorded=recorded) == delta


def test_unknown_feedback_kind_is_an_error() -> None:
    with pytest.raises(DecisionError, match="unknown feedback kind"):
        update("purchase")
    assert issubclass(DecisionError, SegoneError)


# --- propensities ----------------------------------------------------------------------------


def test_propensities_match_the_empirical_selection_frequency() -> None:
    """Over many seeded decisions, each item is shown (and shown first) as often as the logged
    propensities say; items that the bounds prune are never shown and have propensity 0."""
    items = [f"I{i}" for i in range(8)]
    priors = {i: Prior(0.05, lift=1.0 + 0.3 * k) for k, i in enumerate(items)}
    stats: dict[str, tuple[float, float]] = {}
    for k, i in enumerate(items[:4]):  # well-known items, one of them far below the rest
        g, c = keys_for("home", "new", i)
        rate = [0.001, 0.06, 0.07, 0.08][k]
        stats[g] = (rate * 5000, 5000.0)
        stats[c] = (rate * 2000, 2000.0)
    rng = np.random.default_rng(3)
    rounds, slots = 3000, 2
    shown: Counter[str] = Counter()
    p_sum: Counter[str] = Counter()
    for _ in range(rounds):
        r = thompson(items, priors, stats, slots=slots, rng=rng, placement="home", group="new")
        assert np.all((r.p_shown >= 0) & (r.p_shown <= 1))
        assert r.p_shown.sum() == pytest.approx(slots)
        for x in r.ranked:
            assert 0 < x.position_propensity <= x.propensity <= 1
            shown[x.item] += 1
        for i, p in zip(r.candidates, r.p_shown.tolist(), strict=True):
            p_sum[i] += p
    assert shown["I0"] == 0 and p_sum["I0"] == 0  # pruned: it can never beat the others
    for i in items:
        assert shown[i] / rounds == pytest.approx(p_sum[i] / rounds, abs=0.03), i
    assert len(shown) >= 5  # not a degenerate case


def test_position_one_propensity_is_the_selection_frequency() -> None:
    """With one slot, the logged propensity of the chosen item averages, per item, to how
    often it is chosen (IPW identity: E[1{chosen=i} / p] = 1 for every i with p > 0)."""
    items = ["A", "B", "C"]
    priors = {"A": Prior(0.05), "B": Prior(0.05, lift=1.3), "C": Prior(0.05, lift=1.6)}
    rng = np.random.default_rng(11)
    rounds = 4000
    weight: Counter[str] = Counter()
    for _ in range(rounds):
        (x,) = rank(items, priors, {}, slots=1, rng=rng)
        weight[x.item] += 1 / x.propensity
    for i in items:
        assert weight[i] / rounds == pytest.approx(1.0, abs=0.12), i


# --- learning --------------------------------------------------------------------------------


def test_the_policy_learns_from_feedback() -> None:
    """Simulated visitors click items at different rates; the online loop (decide, log,
    feedback, counters) shows the best item most and its regret is far below random's."""
    rates = {"P000": 0.01, "P001": 0.02, "P002": 0.03, "P003": 0.04, "P004": 0.06, "P005": 0.12}
    cat = CatalogueIndex({i: {"popularity": 10.0} for i in rates})
    best = max(rates.values())
    world = np.random.default_rng(5)
    rng = np.random.default_rng(6)
    stats: dict[str, tuple[float, float]] = {}
    view = {"lifecycle_stage": "active"}
    ctx = {"placement": "home", "limit": 1, "follow_up": False}
    regret = 0.0
    late: Counter[str] = Counter()
    rounds = 3000
    for t in range(rounds):
        d = decide(view, None, ctx, cat, stats, None, S, NOW, rng)
        item = d.items[0].item
        regret += best - rates[item]
        if t >= rounds - 1000:
            late[item] += 1
        log = json.loads(json.dumps(d.log))  # what the store gives back
        add(stats, feedback_deltas(log, item, "impression")[0])
        if world.random() < rates[item]:
            add(stats, feedback_deltas(log, item, "click", recorded=("impression",))[0])
    uniform = rounds * (best - np.mean(list(rates.values())))
    assert late.most_common(1)[0][0] == "P005"
    assert late["P005"] > 600
    assert regret < 0.35 * uniform


def test_group_leverage_separates_context_groups() -> None:
    """Counters per context group: what at_risk customers click is not what new ones click."""
    cat = CatalogueIndex({"A": {}, "B": {}})
    stats: dict[str, tuple[float, float]] = {}
    for group, good in (("at_risk", "A"), ("new", "B")):
        for item in "AB":
            s = 60.0 if item == good else 3.0
            add(stats, {k: (s, 600.0) for k in keys_for("home", group, item)})
    rng = np.random.default_rng(1)
    ctx = {"placement": "home", "limit": 1}
    for group, good in (("at_risk", "A"), ("new", "B")):
        picks = Counter(
            decide({"lifecycle_stage": group}, None, ctx, cat, stats, None, S, NOW, rng)
            .items[0]
            .item
            for _ in range(100)
        )
        assert picks[good] > 90
        d = decide({"lifecycle_stage": group}, None, ctx, cat, stats, None, S, NOW, rng)
        assert f"popular with {group} customers" in d.items[0].reasons


# --- individual leverage and cold start ------------------------------------------------------


def test_batch_recommendations_are_ranked_up_before_any_feedback() -> None:
    cat = CatalogueIndex(catalogue(40))
    published = {
        "recommendations": [
            {"product_id": "P007", "score": 0.9, "reason": "because you bought P001"},
            {"product_id": "P019", "score": 0.6, "reason": "because you bought P002"},
            {"product_id": "P033", "score": 0.4, "reason": "popular in your segment"},
        ]
    }
    rng = np.random.default_rng(2)
    ctx = {"placement": "home", "limit": 5}
    top: Counter[str] = Counter()
    positions: Counter[str] = Counter()
    for _ in range(200):
        d = decide({}, published, ctx, cat, {}, None, S, NOW, rng)
        for r in d.items:
            top[r.item] += 1
            positions[r.item] += r.position
        if d.items[0].item == "P007":
            # the reason names the product as the catalogue does, not by its id
            assert d.items[0].reasons[0] == "because you bought item 1"
    # shown in the top 5 of 40 almost always (5 / 40 = 12.5% by chance), the best one first
    assert top["P007"] > 180 and top["P019"] > 170 and top["P033"] > 150
    assert positions["P007"] / top["P007"] < 2.0
    others = [top[i] for i in cat if i not in ("P007", "P019", "P033")]
    assert max(others) < 60
    assert decide({}, published, ctx, cat, {}, None, S, NOW, rng).log["individual"] is True


def test_cold_start_person_gets_an_answer_with_reasons() -> None:
    cat = catalogue(30, popularity=False)
    for k, doc in enumerate(cat.values()):
        doc["popularity"] = float(k)  # P029 the most popular
    d = decide(
        None, None, {"placement": "home"}, cat, {}, None, None, NOW, np.random.default_rng(0)
    )
    assert len(d.items) == S.default_limit
    assert all(r.reasons for r in d.items)
    assert d.group == "unknown"
    assert d.channel.channel is None and d.channel.reason == "no consent"
    assert d.channel_delta is None and d.stat_deltas == {}
    assert {r.reasons[-1] for r in d.items} <= {"explore", "bestseller"}
    assert all(("bestseller" in r.reasons) == (r.item >= "P022") for r in d.items)
    assert sum(r.item >= "P015" for r in d.items) >= 7  # popularity sets the prior
    body = d.response()
    assert body["decision_id"] == d.decision_id and len(d.decision_id) == 32
    assert [i["id"] for i in body["items"]] == [r.item for r in d.items]
    json.dumps(d.log)  # JSON-able as the store needs it
    assert d.log["candidates"] == list(cat) and len(d.log["p_shown"]) == 30
    assert d.log["policy"]["name"] and d.log["policy"]["params"]["n_draws"] == d.log["n_draws"]


def test_taste_profile_ranks_a_category_up() -> None:
    cat = CatalogueIndex(catalogue(30))
    view = {"category_affinity": {"Sports > Running": 1.0}, "lifecycle_stage": "active"}
    rng = np.random.default_rng(4)
    hits = [
        r
        for _ in range(100)
        for r in decide(
            view, None, {"placement": "p", "limit": 3}, cat, {}, None, S, NOW, rng
        ).items
    ]
    sports = [r for r in hits if cat[r.item]["category"].startswith("Sports")]
    assert len(sports) / len(hits) > 0.9  # a third of the catalogue
    assert all("matches your taste (Sports > Running)" in r.reasons for r in sports)
    assert not any("bestseller" in r.reasons for r in hits)  # all equally popular


# --- exclusions, context ---------------------------------------------------------------------


def test_exclusions_suppression_and_bought_items() -> None:
    cat = catalogue(12)
    cat["P001"]["suppressed"] = True
    cat["P002"]["active"] = False
    view = {"products_bought": ["P003"]}
    published = {"owned": ["P004"], "recommendations": [{"product_id": "P003", "score": 1.0}]}
    supp = {"email:x@example.com": {"channels": ["email"], "items": ["P005"]}}
    ctx = {"placement": "home", "limit": 20, "exclude": ["P006"]}
    d = decide(
        view, published, ctx, cat, {}, None, S, NOW, np.random.default_rng(0), suppressions=supp
    )
    shown = {r.item for r in d.items}
    assert shown == {f"P{i:03d}" for i in range(12)} - {f"P00{i}" for i in range(1, 7)}
    assert d.log["excluded"] == {"context": 1, "suppressed": 3, "bought": 2}
    ctx["exclude_bought"] = False
    d = decide(
        view, published, ctx, cat, {}, None, S, NOW, np.random.default_rng(0), suppressions=supp
    )
    assert {"P003", "P004"} <= {r.item for r in d.items}


def test_candidates_and_offers_from_the_request() -> None:
    cat = catalogue(5)
    ctx = {
        "placement": "checkout",
        "candidates": ["P001", {"id": "OFFER-10", "popularity": 9.0}, "P001", "NEW"],
        "limit": 5,
    }
    d = decide({}, None, ctx, cat, {}, None, S, NOW, np.random.default_rng(0))
    assert d.log["candidates"] == ["P001", "OFFER-10", "NEW"]
    assert {r.item for r in d.items} == {"P001", "OFFER-10", "NEW"}
    keys = decision_keys({}, ctx, cat, S)
    assert set(d.stat_keys) <= set(keys)
    assert channel_key("email") in keys
    assert set(keys_for("checkout", "unknown", "OFFER-10")) <= set(keys)


@pytest.mark.parametrize(
    "ctx",
    [
        {},
        {"placement": ""},
        {"placement": 3},
        {"placement": "x", "limit": 0},
        {"placement": "x", "limit": True},
        {"placement": "x", "limit": 10_000},
        {"placement": "x", "candidates": "P1"},
        {"placement": "x", "candidates": [{"name": "no id"}]},
        {"placement": "x", "candidates": [5]},
        {"placement": "x", "exclude": "P1"},
        {"placement": "x", "follow_up": "yes"},
        [],
    ],
)
def test_bad_context_is_a_decision_error(ctx: Any) -> None:
    with pytest.raises(DecisionError):
        decide({}, None, ctx, catalogue(3), {}, None, S, NOW, np.random.default_rng(0))


def test_catalogue_index_and_plain_documents_decide_alike() -> None:
    cat = catalogue(60)
    view = {"lifecycle_stage": "active", "category_affinity": [["Home > Kitchen", 0.5]]}
    a = decide(view, None, {"placement": "h"}, cat, {}, None, S, NOW, np.random.default_rng(9))
    b = decide(
        view,
        None,
        {"placement": "h"},
        CatalogueIndex(cat),
        {},
        None,
        S,
        NOW,
        np.random.default_rng(9),
    )
    assert a.items == b.items and a.log["p_shown"] == b.log["p_shown"]
    big = DecisionSettings(max_candidates=20)
    c = decide(view, None, {"placement": "h"}, cat, {}, None, big, NOW, np.random.default_rng(9))
    assert len(c.log["candidates"]) == 20


def test_a_candidate_list_decides_alike_from_the_index_and_from_the_documents() -> None:
    # the index path slices the catalogue's arrays (CatalogueIndex.subset), the documents path
    # parses the candidates' documents: the same decision, draw for draw
    rng = np.random.default_rng(3)
    cat = catalogue(80)
    for k, d in enumerate(cat.values()):
        d.update(
            preference_prior=float(rng.gamma(0.5, 0.1)),
            category_prior=1.0 + k % 3,
            category_total=6.0,
            within_prior=float(rng.gamma(0.5, 0.1)),
            within_total=float(1.0 + k % 3),
            buy_again=bool(k % 2),
            price=float(10 + k % 7),
            usual_price=12.0,
            feature=k % 5 == 0,
            display=k % 7 == 0,
            suppressed=k == 11,
        )
        if k % 9 == 0:
            d["associations"] = [
                {
                    "kind": "basket",
                    "if": ["P001", "P002"],
                    "confidence": 0.6,
                    "lift": 9.0,
                    "count": 30,
                }
            ]
    ids = list(cat)
    chosen = [ids[j] for j in rng.permutation(80)[:50].tolist()]
    ctx = {"placement": "h", "limit": 6, "candidates": [*chosen, chosen[0]]}
    published = {"preferences": {ids[1]: 2.0, ids[2]: 1.0, ids[5]: 0.5}, "owned": ids[1:3]}
    view = {"lifecycle_stage": "active"}
    a = decide(
        view, published, ctx, CatalogueIndex(cat), {}, None, S, NOW, np.random.default_rng(4)
    )
    b = decide(view, published, ctx, cat, {}, None, S, NOW, np.random.default_rng(4))
    assert a.items == b.items
    assert a.log["p_shown"] == b.log["p_shown"] and a.log["candidates"] == b.log["candidates"]
    # and every array of the index alike
    sub = CatalogueIndex(cat).subset(chosen)
    fresh = CatalogueIndex({i: cat[i] for i in chosen})
    assert sub.ids == fresh.ids and sub.names == fresh.names
    for name in ("popularity", "blocked", "preference_prior", "buy_again", "price", "usual_price"):
        assert np.array_equal(getattr(sub, name), getattr(fresh, name), equal_nan=True), name
    for name in ("feature", "display"):
        assert np.array_equal(getattr(sub, name), getattr(fresh, name)), name
    assert np.array_equal(sub.learned("within_prior"), fresh.learned("within_prior"))
    same_cat = [sub.categories[c] for c in sub.category_codes]
    assert same_cat == [fresh.categories[c] for c in fresh.category_codes]
    assert sub.associations == fresh.associations and sub.associations
    assert sub.keys_for_all("h", "g") == fresh.keys_for_all("h", "g")
    assert (sub.popularity_top, sub.popularity_median) == (
        fresh.popularity_top,
        fresh.popularity_median,
    )


def test_settings_from_the_project_settings() -> None:
    server = SimpleNamespace(frequency_cap_per_day=1, channels=["whatsapp"])
    s = DecisionSettings.from_settings(SimpleNamespace(server=server))
    assert s.frequency_cap_per_day == 1 and s.channels == ("email", "sms", "push", "whatsapp")
    assert DecisionSettings.from_settings(None) == DecisionSettings()
    assert DecisionSettings.from_settings(s) is s


# --- feedback --------------------------------------------------------------------------------


def _consented_decision(rng_seed: int = 0) -> Any:
    view = {"consent_email": True, "consent_sms": False, "lifecycle_stage": "new"}
    return decide(
        view,
        None,
        {"placement": "home", "limit": 3},
        catalogue(10),
        {},
        None,
        S,
        NOW,
        np.random.default_rng(rng_seed),
    )


def test_feedback_deltas_and_errors() -> None:
    d = _consented_decision()
    log = json.loads(json.dumps(d.log))
    item = d.items[0].item
    deltas, ch = feedback_deltas(log, item, "impression")
    assert deltas == {k: (0.0, 1.0) for k in keys_for("home", "new", item)} and ch is None
    deltas, ch = feedback_deltas(log, item, "click", recorded=["impression"], channel="email")
    assert deltas[channel_key("email")] == (1.0, 0.0)
    assert ch == {"channel": "email", "responded": 1}
    assert feedback_deltas(log, item, "conversion", recorded=["impression", "click"]) == ({}, None)
    with pytest.raises(DecisionError, match="not shown"):
        feedback_deltas(log, "P-NOT-SHOWN", "click")
    with pytest.raises(DecisionError, match="unknown feedback kind"):
        feedback_deltas(log, item, "like")
    with pytest.raises(DecisionError, match="channel"):
        feedback_deltas(log, item, "click", channel="sms")
    with pytest.raises(DecisionError, match="not a decision log"):
        feedback_deltas({"shown": []}, item, "click")


def test_decision_with_a_channel_records_one_contact() -> None:
    d = _consented_decision()
    assert d.channel.channel == "email" and d.channel.reason == "only eligible channel"
    assert d.channel.propensity == 1.0
    assert d.stat_deltas == {channel_key("email"): (0.0, 1.0)}
    doc = apply_channel_delta(None, d.channel_delta or {}, NOW)
    assert doc == {"email": {"sent": 1, "responded": 0, "recent": [NOW.isoformat()]}}
    doc = apply_channel_delta(doc, {"channel": "email", "responded": 1}, NOW + timedelta(days=2))
    assert doc["email"] == {"sent": 1, "responded": 1, "recent": []}  # older than 24 h dropped
    with pytest.raises(DecisionError):
        apply_channel_delta(doc, {"responded": 1}, NOW)
    off = decide(
        {},
        None,
        {"placement": "x", "follow_up": False},
        {},
        {},
        None,
        S,
        NOW,
        np.random.default_rng(0),
    )
    assert off.items == [] and off.channel.reason == "not asked" and off.channel_delta is None


# --- channels --------------------------------------------------------------------------------


def test_channel_learns_each_persons_responses() -> None:
    view = {"consent_email": True, "consent_sms": "yes", "consent_push": None}
    doc = {
        "email": {"sent": 40, "responded": 0, "recent": []},
        "sms": {"sent": 40, "responded": 12, "recent": []},
    }
    rng = np.random.default_rng(0)
    picks = Counter(
        choose_channel(view, doc, {}, channels=S.channels, cap=3, now=NOW, rng=rng).channel
        for _ in range(200)
    )
    assert picks["sms"] > 190 and picks["push"] == 0
    c = choose_channel(view, doc, {}, channels=S.channels, cap=3, now=NOW, rng=rng)
    assert c.considered == {"email": "eligible", "sms": "eligible", "push": "no consent"}
    assert c.rates["sms"] > c.rates["email"]


def test_channel_prior_from_batch_email_click_probability() -> None:
    view = {"consent_email": True, "consent_push": True}
    rng = np.random.default_rng(0)
    hi = Counter(
        choose_channel(
            {**view, "p_email_click": 0.4}, None, {}, channels=S.channels, cap=3, now=NOW, rng=rng
        ).channel
        for _ in range(200)
    )
    lo = Counter(
        choose_channel(
            {**view, "p_email_click": 0.001}, None, {}, channels=S.channels, cap=3, now=NOW, rng=rng
        ).channel
        for _ in range(200)
    )
    assert hi["email"] > 180 and lo["email"] < 40


def test_channel_cap_suppression_and_reasons() -> None:
    view = {"consent_email": True, "consent_sms": True, "consent_push": False}
    recent = [(NOW - timedelta(hours=h)).isoformat() for h in (1, 5, 23)]
    doc = {"email": {"sent": 3, "responded": 0, "recent": recent}}
    supp = {"phone:+15550001": {"reason": "STOP"}}
    rng = np.random.default_rng(0)
    c = choose_channel(
        view, doc, {}, channels=S.channels, cap=3, now=NOW, rng=rng, suppressions=supp
    )
    assert c.channel is None
    assert c.reason == "email: capped; sms: suppressed; push: no consent"
    later = NOW + timedelta(hours=2)  # the contact 23 hours ago leaves the window
    c = choose_channel(
        view, doc, {}, channels=S.channels, cap=3, now=later, rng=rng, suppressions=supp
    )
    assert c.channel == "email"
    c = choose_channel(
        view,
        None,
        {},
        channels=S.channels,
        cap=3,
        now=NOW,
        rng=rng,
        suppressions={"user_id:u1": {"channels": "*"}},
    )
    assert c.channel is None and c.reason == "email: suppressed; sms: suppressed; push: no consent"

"""The ladder's response model: driven by each person's true state, nothing hard-coded."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from segone.campaigns.audiences import Audience
from segone.campaigns.campaign import Campaign
from segone.campaigns.run import Plan, Planned
from segone.campaigns.simulate import (
    RELEVANCE_EXACT,
    RELEVANCE_FAMILY,
    RELEVANCE_NONE,
    SimulationError,
    TrueState,
    relevance,
    response_probabilities,
    true_state,
)

AT = datetime(2025, 1, 1, tzinfo=UTC)


def test_relevance_follows_the_true_taste() -> None:
    taste = "Sports & Outdoors > Camping"
    assert relevance(taste, ["Sports & Outdoors > Camping"]) == RELEVANCE_EXACT
    assert relevance(taste, ["Books > Fiction", "Sports & Outdoors > Fishing"]) == RELEVANCE_FAMILY
    assert relevance(taste, ["Books > Fiction", None]) == RELEVANCE_NONE
    assert RELEVANCE_EXACT > RELEVANCE_FAMILY > RELEVANCE_NONE


def _plan(people: list[Planned]) -> Plan:
    c = Campaign.from_obj({"name": "x", "audience": "vip"})
    return Plan(c, AT, Audience("email", [], None), people)  # type: ignore[arg-type]


def test_response_depends_on_each_persons_state() -> None:
    cat = "Home > Kitchen"
    people = [
        Planned(f"c{i}", "e", "treatment", "a", {}, products=[{"category": cat}]) for i in range(6)
    ]
    people.append(Planned("c6", "e", "holdout", "a", {}, products=[{"category": cat}]))
    state = TrueState(
        customer_id=np.array([f"c{i}" for i in range(7)]),
        rate=np.array([4.0, 4.0, 4.0, 4.0, 0.5, 4.0, 4.0]),
        churned=np.array([False, False, True, False, False, False, False]),
        open_p=np.array([0.5, 0.0, 0.5, 0.5, 0.5, 0.5, 0.5]),
        taste=np.array([cat, cat, cat, "Books > Fiction", cat, cat, cat]),
        seeker=np.zeros(7, bool),
        order_value=np.full(7, 50.0),
    )
    p0, p1, treated, ks = response_probabilities(_plan(people), state, {"c5": 4}, 30)
    assert ks == list(range(7)) and treated.tolist() == [True] * 6 + [False]
    u = 1 - (1 - p1) / (1 - p0)  # the message-caused part
    assert u[1] == 0  # never opens e-mail: the message does nothing
    assert u[2] < u[0] and p0[2] < p0[0]  # truly churned: little intent, little organic
    assert u[3] < u[0]  # products off their taste
    assert u[4] < u[0]  # buys rarely
    assert u[5] < u[0]  # tired of e-mail
    assert np.all(p1 >= p0) and np.all((p1 >= 0) & (p1 <= 1))


def test_without_a_truth_the_ladder_says_so(tmp_path: Path) -> None:
    with pytest.raises(SimulationError, match="segone sample"):
        true_state(None, tmp_path, AT)  # type: ignore[arg-type]


def test_replays_of_one_plan_cover_the_true_lift() -> None:
    from segone.campaigns.simulate import replay_coverage

    rng = np.random.default_rng(4)
    n = 6000
    arm = rng.choice(np.array(["mass", "trig"]), n)
    treated = rng.random(n) < 0.8
    p0 = rng.uniform(0.05, 0.2, n)
    p1 = np.minimum(p0 + np.where(arm == "mass", 0.06, 0.0), 1)
    out = replay_coverage(p0, p1, treated, arm, {"mass": "mass", "trig": "triggered"}, plays=400)
    assert 0.92 <= out["mass"]["coverage"] <= 0.98
    assert 0.92 <= out["trig"]["coverage"] <= 0.98
    assert out["mass"]["significant"] > 0.5 > out["trig"]["significant"]

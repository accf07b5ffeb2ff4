"""``segone evaluate policy``: candidate policies valued from a real decision log.

Decisions are made by ``decide`` (the policy that runs in the server) and logged in a real
SQLite online store; clicks come from known per-item click rates, so the true value of every
candidate policy is known and the estimates must cover it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from segone.decisions import CatalogueIndex, DecisionSettings, decide
from segone.decisions.evaluate import evaluate_policy, load_log
from segone.exceptions import DecisionError
from segone.models.ope import OPEInputError, slate_values
from segone.online.store import LoggedDecision, OnlineStore

NOW = datetime(2025, 3, 1, tzinfo=UTC)
S = DecisionSettings()
ITEMS = [f"i{k}" for k in range(8)]
CLICK = dict(zip(ITEMS, [0.30, 0.25, 0.05, 0.05, 0.04, 0.03, 0.02, 0.01], strict=True))


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> list[LoggedDecision]:
    """1,500 decisions of 2 slots among 8 items by the running policy, with clicks."""
    db = tmp_path_factory.mktemp("eval") / "online.db"
    rng = np.random.default_rng(5)
    cat = CatalogueIndex({i: {"name": i.upper(), "popularity": 1.0} for i in ITEMS})
    with OnlineStore.open(f"sqlite:///{db}") as store:
        for k in range(1500):
            now = NOW + timedelta(seconds=k)
            d = decide(
                {},
                None,
                {"placement": "home", "limit": 2, "follow_up": False},
                cat,
                {},
                None,
                S,
                now,
                rng,
            )
            with store.write() as tx:
                tx.decisions.log(d.decision_id, f"p{k % 300}", now, d.placement, d.log)
                for r in d.items:
                    if rng.random() < CLICK[r.item]:
                        tx.decisions.log_feedback(d.decision_id, r.item, "click", now, {})
        with store.read() as tx:
            return tx.decisions.history("home")


def _truth(top: list[str]) -> float:
    return sum(CLICK[i] for i in top)


def test_the_estimates_cover_each_policys_true_value(logged: list[LoggedDecision]) -> None:
    uniform = 2 * float(np.mean(list(CLICK.values())))
    greedy_truth = {
        # the items the logged policy was most likely to show: without feedback in its
        # counters every item is alike, so greedy shows the first two candidates
        "uniform": uniform,
        "popular": _truth(["i0", "i1"]),
    }
    for policy, truth in greedy_truth.items():
        ev = evaluate_policy(logged, policy, n_bootstrap=500)
        assert ev.decisions == 1500 and ev.shown == 3000
        for est in ("ipw", "snipw", "dr"):
            v = ev.values[est]
            assert v.low <= truth <= v.high, (policy, est, v)
    pop = evaluate_policy(logged, "popular", n_bootstrap=500)
    uni = evaluate_policy(logged, "uniform", n_bootstrap=500)
    # the best items for everyone beat random, clearly
    assert pop.values["dr"].low > uni.values["dr"].high


def test_the_logged_policy_is_valued_at_its_on_policy_value(
    logged: list[LoggedDecision],
) -> None:
    ev = evaluate_policy(logged, "logged", n_bootstrap=200)
    # the weights are all 1: IPW is exactly the mean clicks per decision
    assert ev.values["ipw"].value == pytest.approx(ev.logged.value)
    assert ev.values["snipw"].value == pytest.approx(ev.logged.value)


def test_bad_requests_are_refused(logged: list[LoggedDecision]) -> None:
    with pytest.raises(DecisionError, match="policy must be one of"):
        evaluate_policy(logged, "best")
    with pytest.raises(DecisionError, match="reward must be one of"):
        load_log(logged, "purchase")
    with pytest.raises(DecisionError, match="no decision"):
        load_log([])
    with pytest.raises(OPEInputError, match="max_weight"):
        evaluate_policy(logged, "uniform", max_weight=0.0)
    with pytest.raises(OPEInputError, match="propensity"):
        slate_values(1, [0], [0.0], [1.0], [1.0], [0.0], [0], [1.0], [0.0])


def test_the_cli_prints_every_estimator(tmp_path: Path, logged: list[LoggedDecision]) -> None:
    from typer.testing import CliRunner

    from segone.cli import app
    from segone.project import Project

    proj = Project.init(tmp_path / "proj")
    from segone.pipeline.publish import open_online

    store = open_online(proj.settings, create=True)
    assert store is not None
    with store.write() as tx:
        for row in logged[:300]:
            tx.decisions.log(row.decision_id, "p", NOW, "home", row.doc)
            for item, kind in row.feedback:
                tx.decisions.log_feedback(row.decision_id, item, kind, NOW, {})
    store.close()
    out = CliRunner().invoke(
        app,
        ["evaluate", "policy", "--policy", "uniform", "-p", str(proj.root), "--bootstrap", "200"],
    )
    assert out.exit_code == 0, out.output
    for word in ("IPW", "SNIPW", "DR", "direct", "logged (on-policy)", "300 decisions"):
        assert word in out.output

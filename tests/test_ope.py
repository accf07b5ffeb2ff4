"""Off-policy estimators, click models and the Open Bandit Dataset sample that ships with segone."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.metrics import log_loss

from segone.datasets.obd import OpenBanditData, load_obd
from segone.exceptions import SegoneError
from segone.models.click import ClickModel, ClickModelError, NotFittedError, ShrunkCTR
from segone.models.ope import (
    OPEInputError,
    doubly_robust,
    ipw,
    on_policy_value,
    prob_greater,
    ranking_action_dist,
    snipw,
)


@pytest.fixture(scope="module")
def obd() -> OpenBanditData:
    return load_obd()


# --------------------------------------------------------------------------------------------
# a synthetic bandit with a known value
# --------------------------------------------------------------------------------------------

N_SEGMENTS, N_ACTIONS = 4, 6
# true click probability of each (segment, action): every segment has a different best action
RNG_TRUTH = np.random.default_rng(2024)
TRUE_Q = 0.05 + 0.3 * RNG_TRUTH.random((N_SEGMENTS, N_ACTIONS))
TARGET = np.full((N_SEGMENTS, N_ACTIONS), 0.1 / (N_ACTIONS - 1))
TARGET[np.arange(N_SEGMENTS), TRUE_Q.argmax(axis=1)] = 0.9  # mostly the best action
# segments are drawn uniformly, so the target's true value is an exact average
TRUE_VALUE = float((TARGET * TRUE_Q).sum(axis=1).mean())


def simulate(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Segment, uniformly logged action and click of ``n`` rounds."""
    rng = np.random.default_rng(seed)
    segment = rng.integers(0, N_SEGMENTS, n)
    action = rng.integers(0, N_ACTIONS, n)
    click = (rng.random(n) < TRUE_Q[segment, action]).astype(float)
    return segment, action, click


def frame(segment: np.ndarray, action: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"segment": [f"s{s}" for s in segment], "item": action})


# --------------------------------------------------------------------------------------------
# the shipped data
# --------------------------------------------------------------------------------------------


def test_obd_sample_matches_its_published_description(obd):
    imp = obd.impressions
    assert imp.shape == (10_000, 89)
    assert int(imp.click.sum()) == 38 and imp.click.mean() == pytest.approx(0.0038)
    assert obd.n_actions == 80 and obd.len_list == 3
    assert sorted(imp.position.unique()) == [1, 2, 3]
    assert (imp.propensity_score == 1 / 80).all()
    assert imp.timestamp.is_monotonic_increasing
    assert [imp[c].nunique() for c in obd.user_features] == [3, 5, 8, 8]
    assert list(obd.items.item_id) == list(range(80))
    assert obd.items.item_feature_0.dtype == np.float64
    assert set(obd.affinity_columns) <= set(imp.columns)


def test_ipw_of_the_logging_policy_is_its_on_policy_ctr(obd):
    imp = obd.impressions
    n = len(imp)
    uniform = np.full((n, obd.n_actions, obd.len_list), 1 / obd.n_actions)
    args = (imp.click, imp.item_id, imp.propensity_score, uniform, imp.position - 1)
    on = on_policy_value(imp.click, n_bootstrap=500)
    by_ipw = ipw(*args, n_bootstrap=500)
    assert on.value == 0.0038
    assert by_ipw.value == on.value  # exactly: every weight is 1
    np.testing.assert_array_equal(by_ipw.replicates, on.replicates)
    assert snipw(*args, n_bootstrap=500).value == pytest.approx(0.0038, abs=1e-15)
    assert on.low < 0.0038 < on.high
    # without positions (2-D) the same holds
    flat = ipw(imp.click, imp.item_id, imp.propensity_score, uniform[:, :, 0], n_bootstrap=10)
    assert flat.value == on.value


# --------------------------------------------------------------------------------------------
# estimators on a synthetic bandit with a known value
# --------------------------------------------------------------------------------------------


def test_estimators_cover_the_true_value_of_a_synthetic_policy():
    segment, action, click = simulate(20_000, seed=1)
    pscore = np.full(len(action), 1 / N_ACTIONS)
    dist = TARGET[segment]
    # the reward model for DR is fitted on a separate log, as DR requires
    s_fit, a_fit, c_fit = simulate(20_000, seed=2)
    model = ClickModel(person_features=["segment"], item_features=["item"], C=1.0)
    model.fit(frame(s_fit, a_fit), c_fit)
    q_hat = model.predict_matrix(
        frame(segment, action)[["segment"]], pd.DataFrame({"item": range(N_ACTIONS)})
    )
    wrong_model = np.full(dist.shape, 0.5)  # DR must survive a bad model when pscores are right

    estimates = [
        ipw(click, action, pscore, dist, n_bootstrap=500, random_state=3),
        snipw(click, action, pscore, dist, n_bootstrap=500, random_state=3),
        doubly_robust(click, action, pscore, dist, q_hat, n_bootstrap=500, random_state=3),
        doubly_robust(click, action, pscore, dist, wrong_model, n_bootstrap=500, random_state=3),
    ]
    for est in estimates:
        assert est.low <= TRUE_VALUE <= est.high, est
        assert est.high - est.low < 0.04, est  # informative, not trivially wide
    # a good reward model makes DR tighter than IPW
    ipw_width = estimates[0].high - estimates[0].low
    assert estimates[2].high - estimates[2].low < 0.9 * ipw_width
    # the truth is well away from the logging policy's value, so covering it means something
    assert abs(click.mean() - TRUE_VALUE) > 0.05
    # and wrong propensities (claiming each action was shown twice as often) are caught
    biased = ipw(click, action, 2 * pscore, dist, n_bootstrap=500, random_state=3)
    assert not biased.low <= TRUE_VALUE <= biased.high


def test_bootstrap_interval_coverage_over_many_simulated_logs():
    hits = {"ipw": 0, "snipw": 0}
    estimates = []
    for rep in range(100):
        segment, action, click = simulate(1500, seed=100 + rep)
        pscore = np.full(len(action), 1 / N_ACTIONS)
        a = ipw(click, action, pscore, TARGET[segment], n_bootstrap=150, random_state=rep)
        b = snipw(click, action, pscore, TARGET[segment], n_bootstrap=150, random_state=rep)
        hits["ipw"] += a.low <= TRUE_VALUE <= a.high
        hits["snipw"] += b.low <= TRUE_VALUE <= b.high
        estimates.append(a.value)
    assert 85 <= hits["ipw"] <= 100 and 85 <= hits["snipw"] <= 100, hits
    # IPW is unbiased: the mean of 100 estimates is within 3 standard errors of the truth
    est = np.array(estimates)
    assert abs(est.mean() - TRUE_VALUE) < 3 * est.std(ddof=1) / np.sqrt(len(est))


def test_snipw_stays_in_the_reward_range_where_ipw_does_not():
    # 20 rounds, the target shows action 0 always; it was logged (with a click) only 5 times
    action = np.r_[np.zeros(5, dtype=int), np.ones(15, dtype=int)]
    click = np.r_[np.ones(5), np.zeros(15)]
    pscore = np.full(20, 0.1)
    dist = np.tile([1.0, 0.0], (20, 1))
    a = ipw(click, action, pscore, dist, n_bootstrap=500, random_state=0)
    b = snipw(click, action, pscore, dist, n_bootstrap=500, random_state=0)
    assert a.value == pytest.approx(2.5) and a.high > 1
    assert b.value == 1.0 and b.low == b.high == 1.0  # every draw re-normalised
    assert set(np.unique(b.replicates)) <= {0.0, 1.0}  # 0 only when no action-0 round is drawn


def test_paired_bootstrap_comparison():
    segment, action, click = simulate(5000, seed=5)
    pscore = np.full(len(action), 1 / N_ACTIONS)
    good = ranking_action_dist(TRUE_Q[segment])[:, :, 0]
    bad = ranking_action_dist(-TRUE_Q[segment])[:, :, 0]
    v_good = ipw(click, action, pscore, good, n_bootstrap=1000, random_state=0)
    v_bad = ipw(click, action, pscore, bad, n_bootstrap=1000, random_state=0)
    assert prob_greater(v_good, v_bad) > 0.99
    assert prob_greater(v_bad, v_good) < 0.01
    other_seed = ipw(click, action, pscore, bad, n_bootstrap=1000, random_state=1)
    with pytest.raises(OPEInputError, match="same seed"):
        prob_greater(v_good, other_seed)


def test_ranking_action_dist_fills_each_slot_with_a_different_action():
    scores = np.array([[0.1, 0.5, 0.3, 0.5], [4.0, 3.0, 2.0, 1.0]])
    dist = ranking_action_dist(scores, n_positions=3)
    assert dist.shape == (2, 4, 3)
    np.testing.assert_array_equal(dist.sum(axis=1), 1.0)
    np.testing.assert_array_equal(dist.argmax(axis=1), [[1, 3, 2], [0, 1, 2]])  # ties: lower id
    assert (dist.sum(axis=2) <= 1).all()
    with pytest.raises(OPEInputError, match="n_positions"):
        ranking_action_dist(scores, n_positions=5)


# --------------------------------------------------------------------------------------------
# input errors
# --------------------------------------------------------------------------------------------


def test_inputs_are_checked_with_clear_errors():
    r = np.array([0.0, 1.0, 0.0])
    a = np.array([0, 1, 2])
    p = np.full(3, 1 / 3)
    ok = np.full((3, 3), 1 / 3)
    assert issubclass(OPEInputError, SegoneError) and issubclass(OPEInputError, ValueError)
    with pytest.raises(OPEInputError, match="sum to 1"):
        ipw(r, a, p, np.full((3, 3), 0.3))
    with pytest.raises(OPEInputError, match="probabilities in"):
        ipw(r, a, p, np.array([[1.5, -0.5, 0.0]] * 3))
    with pytest.raises(OPEInputError, match="rounds"):
        ipw(r, a, p, np.full((4, 3), 1 / 3))
    with pytest.raises(OPEInputError, match="shape"):
        ipw(r, a, p, np.full(3, 1 / 3))
    with pytest.raises(OPEInputError, match="give each round's position"):
        ipw(r, a, p, np.full((3, 3, 2), 1 / 3))
    with pytest.raises(OPEInputError, match="position must be integers"):
        ipw(r, a, p, np.full((3, 3, 2), 1 / 3), position=[0, 1, 2])
    with pytest.raises(OPEInputError, match="no position axis"):
        ipw(r, a, p, ok, position=[0, 0, 0])
    with pytest.raises(OPEInputError, match="action must be integers"):
        ipw(r, [0, 1, 3], p, ok)
    with pytest.raises(OPEInputError, match="pscore"):
        ipw(r, a, [0.5, 0.0, 0.5], ok)
    with pytest.raises(OPEInputError, match="estimated_rewards has shape"):
        doubly_robust(r, a, p, ok, np.zeros((3, 4)))
    with pytest.raises(OPEInputError, match="n_bootstrap"):
        snipw(r, a, p, ok, n_bootstrap=0)
    with pytest.raises(OPEInputError, match="empty"):
        on_policy_value([])
    # a 3-D policy with one slot needs no positions
    assert ipw(r, a, p, ok[:, :, None], n_bootstrap=5).value == pytest.approx(1 / 3)


# --------------------------------------------------------------------------------------------
# click models
# --------------------------------------------------------------------------------------------


def interaction_data(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """People of 3 tastes x items of 3 styles; a click is likelier when taste matches style."""
    rng = np.random.default_rng(seed)
    taste = rng.integers(0, 3, n)
    item = rng.integers(0, 12, n)
    style = item % 3
    position = rng.integers(1, 4, n)
    p = np.where(taste == style, 0.12, 0.02) * np.where(position == 1, 1.5, 1.0)
    X = pd.DataFrame(
        {
            "taste": [f"t{t}" for t in taste],
            "age": rng.normal(40, 10, n),
            "item_id": item,
            "style": [f"s{s}" for s in style],
            "position": position,
        }
    )
    return X, (rng.random(n) < p).astype(int), p


def click_model() -> ClickModel:
    return ClickModel(
        person_features=["taste", "age"],
        item_features=["item_id", "style"],
        context_features=["position"],
        numeric_features=["age"],
        C=0.3,
    )


def test_click_model_needs_fitting():
    model = click_model()
    X, _, _ = interaction_data(10, 0)
    for call in (
        lambda: model.predict_proba(X),
        lambda: model.predict_matrix(X, X),
        lambda: model.rank({"taste": "t0", "age": 30}, X, {"position": 1}),
    ):
        with pytest.raises(NotFittedError, match="not fitted"):
            call()
    assert issubclass(NotFittedError, SklearnNotFittedError) and issubclass(
        NotFittedError, SegoneError
    )
    with pytest.raises(NotFittedError):
        ShrunkCTR(levels=[["item_id"]]).predict_proba(X)


def test_click_model_beats_a_constant_and_ranks_the_matching_style_first():
    X, y, _ = interaction_data(20_000, 1)
    X_test, y_test, p_true = interaction_data(20_000, 2)
    model = click_model().fit(X, y)
    p = model.predict_proba(X_test)[:, 1]
    constant = np.full(len(y_test), y.mean())
    ll_model, ll_constant = log_loss(y_test, p), log_loss(y_test, constant)
    ll_truth = log_loss(y_test, p_true)
    # it recovers most of what there is to learn, not just a sliver
    assert ll_model < ll_constant - 0.5 * (ll_constant - ll_truth)
    assert abs(p.sum() - y_test.sum()) < 4 * np.sqrt(y_test.sum())  # calibrated in the large

    items = pd.DataFrame({"item_id": range(12), "style": [f"s{i % 3}" for i in range(12)]})
    items = items.set_index("item_id", drop=False)
    ranked = model.rank({"taste": "t2", "age": 35.0}, items, {"position": 2})
    assert list(ranked.index[:4] % 3) == [2, 2, 2, 2]
    assert ranked.is_monotonic_decreasing and len(ranked) == 12

    # the fast all-pairs scoring agrees with scoring the explicit cross join
    people = X_test.iloc[:5][["taste", "age", "position"]]
    pairs = people.merge(items.reset_index(drop=True), how="cross")
    np.testing.assert_allclose(
        model.predict_matrix(people, items).ravel(), model.predict_proba(pairs)[:, 1], rtol=1e-12
    )
    # and both agree with scikit-learn on the design matrix
    np.testing.assert_allclose(
        model.predict_proba(X_test)[:, 1],
        model.estimator_.predict_proba(model.transform(X_test))[:, 1],
        rtol=1e-10,
    )


def test_click_model_follows_the_estimator_contract():
    model = click_model()
    assert clone(model).get_params() == model.get_params()
    X, y, _ = interaction_data(2000, 3)
    assert model.fit(X, y) is model
    assert model.get_params()["person_features"] == ["taste", "age"]  # stored unchanged
    assert len(model.feature_names_) == model.transform(X).shape[1]
    unseen = X.iloc[:3].assign(taste="never seen", item_id=999)
    assert np.isfinite(model.predict_proba(unseen)).all()
    with pytest.raises(ClickModelError, match="both clicks and non-clicks"):
        click_model().fit(X, np.zeros(len(X)))
    with pytest.raises(ClickModelError, match="lacks the columns"):
        click_model().fit(X.drop(columns="style"), y)
    with pytest.raises(ClickModelError, match="cross"):
        ClickModel(
            person_features=["taste"], item_features=["style"], crosses=[("style", "taste")]
        ).fit(X, y)
    with pytest.raises(ClickModelError, match="C must be positive"):
        ClickModel(item_features=["style"], C=0).fit(X, y)


def test_shrunk_ctr_pulls_small_groups_toward_their_parent():
    X = pd.DataFrame({"item": ["a"] * 100 + ["b"] * 10, "seg": ["x"] * 50 + ["y"] * 60})
    y = np.r_[np.ones(10), np.zeros(90), np.ones(1), np.zeros(9)]
    model = ShrunkCTR(levels=[["item"], ["seg", "item"]], prior_strength=[20.0, 10.0]).fit(X, y)
    base = 11 / 110
    rate_a = (10 + 20 * base) / (100 + 20)
    rate_b = (1 + 20 * base) / (10 + 20)
    # (x, a) has 10 clicks in 50 rows, (y, a) none in 50, (y, b) one in 10
    expected = {
        ("x", "a"): (10 + 10 * rate_a) / (50 + 10),
        ("y", "a"): (0 + 10 * rate_a) / (50 + 10),
        ("y", "b"): (1 + 10 * rate_b) / (10 + 10),
    }
    probe = pd.DataFrame({"seg": ["x", "y", "y", "x"], "item": ["a", "a", "b", "b"]})
    got = model.predict_proba(probe)[:, 1]
    np.testing.assert_allclose(got[:3], list(expected.values()))
    assert got[3] == pytest.approx(rate_b)  # (x, b) never seen: falls back on item b
    # estimated strength: no real difference between groups -> heavy shrinkage
    rng = np.random.default_rng(0)
    flat = pd.DataFrame({"item": rng.integers(0, 20, 20_000)})
    fitted = ShrunkCTR(levels=[["item"]]).fit(flat, rng.random(20_000) < 0.05)
    assert fitted.prior_strength_[0] > 1000

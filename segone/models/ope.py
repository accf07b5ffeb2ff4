"""Off-policy evaluation: a target policy's click rate estimated from another policy's logs.

The definitions follow Open Bandit Pipeline (obp, Saito et al. 2020, arXiv:2008.07146), so
figures are comparable with published ones. Logs are rounds ``i`` with an action ``a_i`` (the
content shown), the behaviour policy's probability of it ``pscore_i``, a reward ``r_i`` (click)
and optionally a ``position_i`` (slot, 0-based). The target policy is given as
``action_dist[i, a]`` (or ``action_dist[i, a, k]`` with positions): its probability of showing
``a`` in round ``i`` (at slot ``k``). With ``w_i = action_dist[i, a_i, position_i] / pscore_i``:

* IPW   ``mean(w r)``
* SNIPW ``sum(w r) / sum(w)``
* DR    ``mean(sum_a action_dist[i, a, k_i] q(i, a, k_i) + w_i (r_i - q(i, a_i, k_i)))`` with
  ``q`` a reward model's predicted click probability.

Each returns the point estimate on all rounds and a percentile bootstrap interval (rounds drawn
with replacement, the estimator recomputed on each draw). Unlike obp, SNIPW is re-normalised
inside every draw instead of dividing by the full-sample mean weight. Draws depend only on
``random_state``, ``n_bootstrap`` and the number of rounds, so two policies evaluated on the
same logs with the same seed share their draws and :func:`prob_greater` compares them paired.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from segone.exceptions import OPEInputError

__all__ = [
    "OPEInputError",
    "PolicyValue",
    "doubly_robust",
    "ipw",
    "on_policy_value",
    "prob_greater",
    "ranking_action_dist",
    "slate_values",
    "snipw",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

_CHUNK = 256  # bootstrap draws per chunk: bounds memory at 256 x n_rounds indices


@dataclass(frozen=True)
class PolicyValue:
    """An estimated policy value (mean reward per round) with its bootstrap interval."""

    estimator: str
    value: float
    low: float
    high: float
    alpha: float
    n_rounds: int
    random_state: int | None
    #: the estimate on each bootstrap draw (paired across calls with the same seed and logs)
    replicates: FloatArray = field(repr=False, compare=False)

    def relative_to(self, baseline: float) -> float:
        """The value as a multiple of ``baseline`` (obp reports policies relative to random)."""
        return self.value / baseline


# --------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------


def _vector(x: ArrayLike, name: str, n: int | None = None) -> FloatArray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise OPEInputError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise OPEInputError(f"{name} has {arr.shape[0]} rounds, expected {n}")
    if not np.isfinite(arr).all():
        raise OPEInputError(f"{name} contains NaN or infinite values")
    return arr


def _indices(x: ArrayLike, name: str, n: int, upper: int) -> IntArray:
    raw = _vector(x, name, n)
    idx = raw.astype(np.int64)
    if (idx != raw).any() or (idx < 0).any() or (idx >= upper).any():
        raise OPEInputError(
            f"{name} must be integers in [0, {upper}), got {raw.min()}..{raw.max()}"
        )
    return idx


def _policy_at_logged_slot(
    action_dist: ArrayLike, n: int, position: ArrayLike | None, name: str
) -> FloatArray:
    """The target's action probabilities at each round's logged slot, (n_rounds, n_actions)."""
    dist = np.asarray(action_dist, dtype=np.float64)
    if dist.ndim not in (2, 3):
        raise OPEInputError(
            f"{name} must have shape (n_rounds, n_actions) or (n_rounds, n_actions, n_positions),"
            f" got {dist.shape}"
        )
    if dist.shape[0] != n:
        raise OPEInputError(f"{name} has {dist.shape[0]} rounds, the logs have {n}")
    if not np.isfinite(dist).all():
        raise OPEInputError(f"{name} contains NaN or infinite values")
    if dist.ndim == 2:
        if position is not None:
            raise OPEInputError(f"position given but {name} has no position axis (2-D)")
        return dist
    n_positions = dist.shape[2]
    if position is None:
        if n_positions != 1:
            raise OPEInputError(f"{name} has {n_positions} positions: give each round's position")
        return dist[:, :, 0]
    pos = _indices(position, "position", n, n_positions)
    return dist[np.arange(n), :, pos]


def _check_probabilities(dist: ArrayLike, name: str) -> None:
    arr = np.asarray(dist, dtype=np.float64)
    if (arr < 0).any() or (arr > 1 + 1e-9).any():
        raise OPEInputError(f"{name} must hold probabilities in [0, 1]")
    sums = arr.sum(axis=1)
    if not np.allclose(sums, 1.0, rtol=0.0, atol=1e-6):
        bad = np.argwhere(~np.isclose(sums, 1.0, rtol=0.0, atol=1e-6))[0]
        raise OPEInputError(
            f"{name} must sum to 1 over actions for every round (and position); "
            f"round {int(bad[0])} sums to {float(sums[tuple(bad)]):.6g}"
        )


def _logs(
    reward: ArrayLike, action: ArrayLike, pscore: ArrayLike, action_dist: ArrayLike
) -> tuple[FloatArray, IntArray, FloatArray, int]:
    r = _vector(reward, "reward")
    n = r.shape[0]
    if n == 0:
        raise OPEInputError("the logs are empty")
    shape = np.shape(action_dist)
    if len(shape) not in (2, 3):
        raise OPEInputError(
            "action_dist must have shape (n_rounds, n_actions) or (n_rounds, n_actions, "
            f"n_positions), got {shape}"
        )
    a = _indices(action, "action", n, shape[1])
    p = _vector(pscore, "pscore", n)
    if (p <= 0).any() or (p > 1).any():
        raise OPEInputError("pscore must be in (0, 1]: a logged action needs a positive propensity")
    _check_probabilities(action_dist, "action_dist")
    return r, a, p, n


def _check_bootstrap(n_bootstrap: int, alpha: float) -> None:
    if n_bootstrap < 1:
        raise OPEInputError(f"n_bootstrap must be at least 1, got {n_bootstrap}")
    if not 0 < alpha < 1:
        raise OPEInputError(f"alpha must be in (0, 1), got {alpha}")


# --------------------------------------------------------------------------------------------
# bootstrap
# --------------------------------------------------------------------------------------------


def _bootstrap_means(
    columns: list[FloatArray], n_bootstrap: int, random_state: int | None
) -> list[FloatArray]:
    """Means of each column over the same ``n_bootstrap`` draws of rows with replacement."""
    n = columns[0].shape[0]
    rng = np.random.default_rng(random_state)
    out = [np.empty(n_bootstrap) for _ in columns]
    for start in range(0, n_bootstrap, _CHUNK):
        stop = min(start + _CHUNK, n_bootstrap)
        idx = rng.integers(0, n, size=(stop - start, n))
        for col, res in zip(columns, out, strict=True):
            res[start:stop] = col[idx].mean(axis=1)
    return out


def _result(
    name: str,
    value: float,
    replicates: FloatArray,
    alpha: float,
    n: int,
    random_state: int | None,
) -> PolicyValue:
    low, high = np.percentile(replicates, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return PolicyValue(
        estimator=name,
        value=float(value),
        low=float(low),
        high=float(high),
        alpha=alpha,
        n_rounds=n,
        random_state=random_state,
        replicates=replicates,
    )


def _mean_estimate(
    name: str, per_round: FloatArray, n_bootstrap: int, alpha: float, random_state: int | None
) -> PolicyValue:
    (reps,) = _bootstrap_means([per_round], n_bootstrap, random_state)
    return _result(name, per_round.mean(), reps, alpha, per_round.shape[0], random_state)


# --------------------------------------------------------------------------------------------
# estimators
# --------------------------------------------------------------------------------------------


def on_policy_value(
    reward: ArrayLike,
    *,
    n_bootstrap: int = 10_000,
    alpha: float = 0.05,
    random_state: int | None = 0,
) -> PolicyValue:
    """Mean reward of the logs themselves: the behaviour policy's value (no weighting)."""
    _check_bootstrap(n_bootstrap, alpha)
    r = _vector(reward, "reward")
    if r.shape[0] == 0:
        raise OPEInputError("the logs are empty")
    return _mean_estimate("on_policy", r, n_bootstrap, alpha, random_state)


def _weights(
    reward: ArrayLike,
    action: ArrayLike,
    pscore: ArrayLike,
    action_dist: ArrayLike,
    position: ArrayLike | None,
) -> tuple[FloatArray, IntArray, FloatArray, FloatArray]:
    r, a, p, n = _logs(reward, action, pscore, action_dist)
    at_slot = _policy_at_logged_slot(action_dist, n, position, "action_dist")
    w = at_slot[np.arange(n), a] / p
    return r, a, w, at_slot


def ipw(
    reward: ArrayLike,
    action: ArrayLike,
    pscore: ArrayLike,
    action_dist: ArrayLike,
    position: ArrayLike | None = None,
    *,
    n_bootstrap: int = 10_000,
    alpha: float = 0.05,
    random_state: int | None = 0,
) -> PolicyValue:
    """Inverse probability weighting: ``mean(w * reward)``; unbiased when pscore is right."""
    _check_bootstrap(n_bootstrap, alpha)
    r, _, w, _ = _weights(reward, action, pscore, action_dist, position)
    return _mean_estimate("ipw", w * r, n_bootstrap, alpha, random_state)


def snipw(
    reward: ArrayLike,
    action: ArrayLike,
    pscore: ArrayLike,
    action_dist: ArrayLike,
    position: ArrayLike | None = None,
    *,
    n_bootstrap: int = 10_000,
    alpha: float = 0.05,
    random_state: int | None = 0,
) -> PolicyValue:
    """Self-normalised IPW: ``sum(w * reward) / sum(w)``; biased but bounded by the rewards.

    When no round carries weight (the target never shows what was logged) the estimate is 0.
    """
    _check_bootstrap(n_bootstrap, alpha)
    r, _, w, _ = _weights(reward, action, pscore, action_dist, position)
    num, den = _bootstrap_means([w * r, w], n_bootstrap, random_state)
    reps = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    value = float((w * r).sum() / w.sum()) if w.sum() > 0 else 0.0
    return _result("snipw", value, reps, alpha, r.shape[0], random_state)


def doubly_robust(
    reward: ArrayLike,
    action: ArrayLike,
    pscore: ArrayLike,
    action_dist: ArrayLike,
    estimated_rewards: ArrayLike,
    position: ArrayLike | None = None,
    *,
    n_bootstrap: int = 10_000,
    alpha: float = 0.05,
    random_state: int | None = 0,
) -> PolicyValue:
    """Doubly robust: the reward model's value of the target, corrected by weighted residuals.

    ``estimated_rewards`` has the shape of ``action_dist``: the model's P(click) of every action
    in every round (at every position). Unbiased if either the pscores or the model are right;
    the model must not have been fitted on these logs, or the correction is too small.
    The interval treats the model as fixed (its own estimation error is not included).
    """
    _check_bootstrap(n_bootstrap, alpha)
    r, a, w, at_slot = _weights(reward, action, pscore, action_dist, position)
    q_all = np.asarray(estimated_rewards, dtype=np.float64)
    if q_all.shape != np.shape(action_dist):
        raise OPEInputError(
            f"estimated_rewards has shape {q_all.shape}, action_dist {np.shape(action_dist)}"
        )
    if not np.isfinite(q_all).all():
        raise OPEInputError("estimated_rewards contains NaN or infinite values")
    q = _policy_at_logged_slot(q_all, r.shape[0], position, "estimated_rewards")
    rows = np.arange(r.shape[0])
    per_round = (at_slot * q).sum(axis=1) + w * (r - q[rows, a])
    return _mean_estimate("dr", per_round, n_bootstrap, alpha, random_state)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def ranking_action_dist(scores: ArrayLike, n_positions: int = 1) -> FloatArray:
    """Deterministic policy that fills slot ``k`` with the action of ``k``-th highest score.

    ``scores`` is ``(n_rounds, n_actions)``; the result is ``(n_rounds, n_actions, n_positions)``
    of 0/1 with one 1 per round and slot and no action in two slots. Ties go to the lower
    action index.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2:
        raise OPEInputError(f"scores must have shape (n_rounds, n_actions), got {s.shape}")
    if not 1 <= n_positions <= s.shape[1]:
        raise OPEInputError(f"n_positions must be in [1, {s.shape[1]}], got {n_positions}")
    if np.isnan(s).any():
        raise OPEInputError("scores contain NaN")
    order = np.argsort(-s, axis=1, kind="stable")[:, :n_positions]
    dist = np.zeros((s.shape[0], s.shape[1], n_positions))
    rows = np.arange(s.shape[0])[:, None]
    dist[rows, order, np.arange(n_positions)[None, :]] = 1.0
    return dist


def prob_greater(a: PolicyValue, b: PolicyValue) -> float:
    """Share of paired bootstrap draws in which ``a`` is strictly above ``b``.

    Both must come from the same logs with the same seed and number of draws (so the draws are
    the same rounds); ties (common when few clicks fall where the policies differ) count as
    not greater, so ``prob_greater(a, b) + prob_greater(b, a)`` can be below 1.
    """
    if a.random_state is None or a.random_state != b.random_state:
        raise OPEInputError("paired comparison needs both estimates made with the same seed")
    if a.n_rounds != b.n_rounds or a.replicates.shape != b.replicates.shape:
        raise OPEInputError("paired comparison needs the same logs and number of draws")
    return float(np.mean(a.replicates > b.replicates))


# --------------------------------------------------------------------------------------------
# slates: a decision shows several items, each logged with its own propensity
# --------------------------------------------------------------------------------------------


def slate_values(
    n_decisions: int,
    shown_decision: ArrayLike,
    shown_behaviour: ArrayLike,
    shown_target: ArrayLike,
    shown_reward: ArrayLike,
    shown_q: ArrayLike,
    candidate_decision: ArrayLike,
    candidate_target: ArrayLike,
    candidate_q: ArrayLike,
    *,
    max_weight: float | None = None,
    n_bootstrap: int = 2_000,
    alpha: float = 0.05,
    random_state: int | None = 0,
) -> dict[str, PolicyValue]:
    """A target policy's expected reward per decision (clicks per decision), from a log of
    decisions that each showed several items.

    Assumes an item's reward does not depend on the other items shown with it (the item-
    position-independent model): then the value is ``sum_a P_target(shown a) x r(a)`` per
    decision, and each shown item is a round with weight ``w = P_target(a) / P_behaviour(a)``
    (both: the probability of being shown at all in the decision's slots).

    * ``ipw``: per decision ``sum_shown w r``;
    * ``snipw``: ``ipw`` divided by the mean over decisions of ``sum_shown w / sum_C P_target``
      (its expectation is 1), which bounds it by the rewards;
    * ``dm`` (direct method): ``sum_C P_target(a) q(a)`` with ``q`` a reward model;
    * ``dr``: ``dm + sum_shown min(w, max_weight) (r - q)``: unbiased when either the
      propensities or ``q`` are right (and no weight is clipped); clipping trades a little
      bias for much less variance.

    Intervals: percentile bootstrap over decisions (paired across estimators and across
    policies evaluated with the same seed).
    """
    _check_bootstrap(n_bootstrap, alpha)
    if n_decisions < 1:
        raise OPEInputError("the decision log is empty")
    sd = np.asarray(shown_decision, dtype=np.int64)
    n_shown = sd.shape[0]
    pb = _vector(shown_behaviour, "shown_behaviour", n_shown)
    pt = _vector(shown_target, "shown_target", n_shown)
    r = _vector(shown_reward, "shown_reward", n_shown)
    qs = _vector(shown_q, "shown_q", n_shown)
    cd = np.asarray(candidate_decision, dtype=np.int64)
    ct = _vector(candidate_target, "candidate_target", cd.shape[0])
    cq = _vector(candidate_q, "candidate_q", cd.shape[0])
    if ((sd < 0) | (sd >= n_decisions)).any() or ((cd < 0) | (cd >= n_decisions)).any():
        raise OPEInputError("a decision index is out of range")
    if (pb <= 0).any() or (pb > 1).any():
        raise OPEInputError("a shown item needs a behaviour propensity in (0, 1]")
    if (pt < 0).any() or (pt > 1).any() or (ct < 0).any() or (ct > 1).any():
        raise OPEInputError("target probabilities must be in [0, 1]")
    if max_weight is not None and not max_weight > 0:
        raise OPEInputError("max_weight must be positive")
    w = pt / pb
    wc = w if max_weight is None else np.minimum(w, max_weight)
    per = {
        "ipw": np.bincount(sd, weights=w * r, minlength=n_decisions),
        "dm": np.bincount(cd, weights=ct * cq, minlength=n_decisions),
    }
    per["dr"] = per["dm"] + np.bincount(sd, weights=wc * (r - qs), minlength=n_decisions)
    mass = np.bincount(cd, weights=ct, minlength=n_decisions)
    norm = np.divide(
        np.bincount(sd, weights=w, minlength=n_decisions),
        np.where(mass > 0, mass, 1.0),
    )
    norm = np.where(mass > 0, norm, 1.0)
    cols = [per["ipw"], per["dm"], per["dr"], norm]
    reps = _bootstrap_means(cols, n_bootstrap, random_state)
    out = {
        name: _result(name, float(col.mean()), rep, alpha, n_decisions, random_state)
        for name, col, rep in zip(("ipw", "dm", "dr"), cols[:3], reps[:3], strict=True)
    }
    den = float(norm.mean())
    sn_reps = np.divide(reps[0], reps[3], out=np.zeros_like(reps[0]), where=reps[3] > 0)
    out["snipw"] = _result(
        "snipw",
        float(per["ipw"].mean()) / den if den > 0 else 0.0,
        sn_reps,
        alpha,
        n_decisions,
        random_state,
    )
    return out

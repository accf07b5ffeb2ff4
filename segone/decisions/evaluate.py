"""Off-policy evaluation on the server's own decision log: what would a candidate policy have
earned, had it decided instead of the one that ran?

Every ``/v1/decide`` logs its candidates, each candidate's exact probability of being shown
(``p_shown``, the share of the Thompson draws that put it in the slots) and what it showed;
``/v1/feedback`` adds clicks and conversions. That is what off-policy evaluation needs: for a
candidate policy's probability ``P_target(a)`` of showing each candidate, the value (rewards per
decision) is estimated by IPW, self-normalised IPW, the direct method and doubly robust with
clipped weights (``segone.models.ope.slate_values``), with bootstrap intervals, beside the
logged policy's own value on the same log.

Candidate policies (what can be computed from the log alone):

* ``logged``: the policy that ran (a check: its IPW value is its on-policy value);
* ``greedy``: no exploration: the ``slots`` candidates the logged policy was most likely to
  show (its posterior means, in effect);
* ``uniform``: every candidate equally likely (``slots / n`` each);
* ``popular``: mass marketing: the ``slots`` candidates with the highest click rate in the log
  (the same items for everyone).

The reward model (``dm``, ``dr``): each item's reward rate over the decisions that showed it,
shrunk toward everyone's rate with ``prior`` pseudo-impressions, cross-fitted on two halves of
the log (a decision is scored by the model of the other half) so that DR's correction is not
made too small by a model that has seen the rewards it corrects.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from segone.exceptions import DecisionError
from segone.models.ope import PolicyValue, slate_values

if TYPE_CHECKING:
    from segone.online.store.records import LoggedDecision

POLICIES = ("logged", "greedy", "uniform", "popular")
REWARDS = {"click": frozenset({"click", "conversion"}), "conversion": frozenset({"conversion"})}


@dataclass(frozen=True)
class DecisionLog:
    """The decisions as arrays: one row per candidate (``cand_*``) and per shown item
    (``shown_*``), each with its decision's index."""

    n: int
    slots: NDArray[np.int64]
    cand_decision: NDArray[np.int64]
    cand_item: NDArray[np.object_]
    cand_behaviour: NDArray[np.float64]
    shown_decision: NDArray[np.int64]
    shown_item: NDArray[np.object_]
    #: the shown item's row among the candidates
    shown_cand: NDArray[np.int64]
    shown_behaviour: NDArray[np.float64]
    shown_reward: NDArray[np.float64]
    fold: NDArray[np.int64]


def load_log(rows: Sequence[LoggedDecision], reward: str = "click") -> DecisionLog:
    """The decisions of the online store's log (``tx.decisions.history()``); ``reward``:
    ``click`` (a click or a conversion) or ``conversion``. Decisions without candidates are
    left out."""
    if reward not in REWARDS:
        raise DecisionError(f"reward must be one of {sorted(REWARDS)}, not {reward!r}")
    kinds = REWARDS[reward]
    slots: list[int] = []
    cd: list[int] = []
    ci: list[str] = []
    cb: list[float] = []
    sd: list[int] = []
    si: list[str] = []
    sc: list[int] = []
    sb: list[float] = []
    sr: list[float] = []
    fold: list[int] = []
    for row in rows:
        doc = row.doc or {}
        cands, p = doc.get("candidates"), doc.get("p_shown")
        shown = doc.get("shown")
        if not (isinstance(cands, list) and isinstance(p, list) and isinstance(shown, list)):
            continue
        if not cands or len(cands) != len(p):
            continue
        k = len(slots)
        base = len(cd)
        at = {str(c): base + j for j, c in enumerate(cands)}
        slots.append(int(doc.get("slots") or len(shown) or 1))
        cd += [k] * len(cands)
        ci += [str(c) for c in cands]
        cb += [float(x) for x in p]
        got = {str(i) for i, kind in row.feedback or () if kind in kinds}
        for s in shown:
            item = str(s.get("item"))
            prop = s.get("propensity")
            if item not in at or not isinstance(prop, int | float) or prop <= 0:
                continue
            sd.append(k)
            si.append(item)
            sc.append(at[item])
            sb.append(float(prop))
            sr.append(1.0 if item in got else 0.0)
        digest = hashlib.blake2b(str(row.decision_id).encode(), digest_size=2).digest()
        fold.append(digest[0] & 1)
    if not slots:
        raise DecisionError("the decision log holds no decision to evaluate")
    return DecisionLog(
        n=len(slots),
        slots=np.array(slots, np.int64),
        cand_decision=np.array(cd, np.int64),
        cand_item=np.array(ci, dtype=object),
        cand_behaviour=np.array(cb, np.float64),
        shown_decision=np.array(sd, np.int64),
        shown_item=np.array(si, dtype=object),
        shown_cand=np.array(sc, np.int64),
        shown_behaviour=np.array(sb, np.float64),
        shown_reward=np.array(sr, np.float64),
        fold=np.array(fold, np.int64),
    )


def reward_model(log: DecisionLog, prior: float = 20.0) -> NDArray[np.float64]:
    """Each candidate row's predicted reward: its item's rate in the other half of the log,
    shrunk toward that half's overall rate with ``prior`` pseudo-impressions."""
    q = np.zeros(len(log.cand_item))
    cand_fold = log.fold[log.cand_decision]
    shown_fold = log.fold[log.shown_decision]
    for f in (0, 1):
        train = shown_fold != f
        r = log.shown_reward[train]
        g = float(r.mean()) if len(r) else 0.0
        items, inv = np.unique(log.shown_item[train].astype(str), return_inverse=True)
        n = np.bincount(inv, minlength=len(items))
        k = np.bincount(inv, weights=r, minlength=len(items))
        rate = dict(zip(items.tolist(), ((k + prior * g) / (n + prior)).tolist(), strict=True))
        rows = np.flatnonzero(cand_fold == f)
        q[rows] = [rate.get(str(i), g) for i in log.cand_item[rows]]
    return q


def _top(
    log: DecisionLog, score: NDArray[np.float64], k_of: NDArray[np.int64]
) -> NDArray[np.float64]:
    """1 for each decision's ``k_of[decision]`` highest-scoring candidates (ties: list order)."""
    out = np.zeros(len(score))
    order = np.lexsort((np.arange(len(score)), -score, log.cand_decision))
    d = log.cand_decision[order]
    starts = np.r_[0, np.flatnonzero(np.diff(d)) + 1]
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    out[order[rank < k_of[d]]] = 1.0
    return out


def target(log: DecisionLog, policy: str, q: NDArray[np.float64]) -> NDArray[np.float64]:
    """The candidate policy's probability of showing each candidate row."""
    n_c = np.bincount(log.cand_decision, minlength=log.n)
    k = np.minimum(log.slots, n_c)
    if policy == "logged":
        return log.cand_behaviour.copy()
    if policy == "uniform":
        return np.asarray(k[log.cand_decision] / n_c[log.cand_decision], dtype=np.float64)
    if policy == "greedy":
        return _top(log, log.cand_behaviour, k)
    if policy == "popular":
        # the same ranking for everyone: the items' rates over the whole log
        items, inv = np.unique(log.shown_item.astype(str), return_inverse=True)
        n = np.bincount(inv, minlength=len(items))
        r = np.bincount(inv, weights=log.shown_reward, minlength=len(items))
        g = float(log.shown_reward.mean()) if len(log.shown_reward) else 0.0
        rate = dict(zip(items.tolist(), ((r + 20 * g) / (n + 20)).tolist(), strict=True))
        score = np.array([rate.get(str(i), g) for i in log.cand_item])
        return _top(log, score, k)
    raise DecisionError(f"policy must be one of {POLICIES}, not {policy!r}")


@dataclass(frozen=True)
class Evaluation:
    """A candidate policy's value by every estimator, and the logged policy's own."""

    policy: str
    decisions: int
    shown: int
    rewards: int
    logged: PolicyValue
    values: dict[str, PolicyValue]


def evaluate_policy(
    rows: Sequence[LoggedDecision],
    policy: str,
    *,
    reward: str = "click",
    max_weight: float | None = 20.0,
    n_bootstrap: int = 2_000,
    alpha: float = 0.05,
    random_state: int = 0,
) -> Evaluation:
    """Estimate ``policy``'s rewards per decision on the logged decisions ``rows``."""
    if policy not in POLICIES:
        raise DecisionError(f"policy must be one of {POLICIES}, not {policy!r}")
    log = load_log(rows, reward)
    q = reward_model(log)
    t = target(log, policy, q)
    vals = slate_values(
        log.n,
        log.shown_decision,
        log.shown_behaviour,
        t[log.shown_cand],
        log.shown_reward,
        q[log.shown_cand],
        log.cand_decision,
        t,
        q,
        max_weight=max_weight,
        n_bootstrap=n_bootstrap,
        alpha=alpha,
        random_state=random_state,
    )
    from segone.models.ope import on_policy_value

    per = np.bincount(log.shown_decision, weights=log.shown_reward, minlength=log.n)
    logged = on_policy_value(per, n_bootstrap=n_bootstrap, alpha=alpha, random_state=random_state)
    return Evaluation(
        policy,
        log.n,
        len(log.shown_item),
        int(log.shown_reward.sum()),
        logged,
        vals,
    )

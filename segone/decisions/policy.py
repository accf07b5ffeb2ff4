"""Contextual Thompson sampling: which items or offers to show, with their exact propensities.

Arms are items. Each has a response rate (click or conversion per impression) estimated from
(successes, trials) counters in the online store, at two levels for one ``placement``:

* global  ``keys_for(...)[0]``: every person's responses to the item at the placement;
* group   ``keys_for(...)[1]``: the responses of people in the same context group (lifecycle
  stage or segment), the "group leverage".

Posterior of the group's rate (a Beta-Bernoulli hierarchy, one level shrunk to the other):

* prior mean ``m`` from the item's popularity (``Prior.rate``), worth ``prior_strength`` trials;
* other groups' counts (global minus this group's) move it: ``mu = (n0 m + S_o) / (n0 + T_o)``;
* this group's counts on top, ``mu`` worth ``group_strength`` trials:
  ``Beta(k mu + S_c, k (1 - mu) + T_c - S_c)``.

The person's own batch score for the item ("individual leverage") multiplies that rate by
``Prior.lift`` (1 + ``individual_weight`` for their top recommendation), so the person's prior
mean for an item is ``lift * m``: their published recommendation when there is one, else the
item's popularity. The lift stays when data accrues: the group's rate is learned, the person's
preference among items keeps tilting it.

With a published preference model the lift is the person's choice probability over
everyone's (``p_i / q_i``, ``segone.decisions.priors``), and it is uncertain too: ``p_i`` is the
mean of the person's Dirichlet posterior over items, whose marginal for item ``i`` is a Beta
with variance ``p_i (1 - p_i) / (alpha_0 + 1)`` (``alpha_0``: the person's recency-weighted
purchases plus everyone's pseudo-counts). Each draw then multiplies a drawn response rate by a
drawn lift (both truncated normals with their posterior's mean and variance), so a person with
little history is explored around everyone's preferences and a loyal buyer hardly at all.

Sampling and propensities: the posterior is approximated by a normal with the Beta's mean and
variance (truncated at 5 standard deviations, clipped to [0, 1]); ``n_draws`` joint draws of
every arm are taken, one of them is picked uniformly at random and its top ``slots`` items are
shown in order. The propensity of an item is then *exactly* the share of draws in which it is
in the top ``slots`` (and the position propensity the share in which it is at that very
position): the policy's probability of the action given the logged context and draws, as
off-policy evaluation needs it, never 0 for a shown item and never below ``1 / n_draws``. A
normal draw costs a fifth of a Beta draw, which keeps 50 candidates x 64 draws well under a
millisecond. Items whose best possible draw cannot reach the top ``slots`` are not drawn at
all (exactly: the truncation bounds every draw), which keeps large catalogues cheap.

Why not Vowpal Wabbit: its contextual-bandit reductions give the probability of one chosen
action under their own exploration (epsilon-greedy, softmax, bagging), not the per-position
probabilities of a ranked list under Thompson sampling that we log for every decision; it is a
native dependency to build and pin on every machine; and its state is a model file to persist
and share between workers, while ours is a few counters per (placement, group, item) that the
online store increments atomically, so every worker sees every feedback at once.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from typing import Self

import numpy as np
from numpy.typing import NDArray

from segone.exceptions import DecisionError

POLICY_NAME = "thompson-beta-normal"
POLICY_VERSION = 2
FEEDBACK_KINDS = ("impression", "click", "conversion")
UNKNOWN_GROUP = "unknown"

Counts = tuple[float, float]
_ZERO: Counts = (0.0, 0.0)
Z_MAX = 5.0  # posterior draws are truncated at this many standard deviations


@dataclass(frozen=True)
class PolicyParams:
    """Hyperparameters of the policy (all logged with every decision)."""

    #: response rate of an item of average popularity before any feedback
    base_rate: float = 0.05
    #: pseudo-count (trials) of the popularity prior: feedback outweighs it after ~100
    #: impressions (measured: 50 to 200 changes the regret of the learning test little, while
    #: weaker priors let cold-start noise bury the person's recommendations)
    prior_strength: float = 100.0
    #: pseudo-count with which a group's rate is shrunk towards the other groups' rate
    group_strength: float = 100.0
    #: the person's top batch recommendation is taken to respond at 1 + this times the item's
    #: group rate (their n-th recommendation at 1 + this x score_n / score_1)
    individual_weight: float = 3.0
    #: an item in a category holding all of the person's taste is multiplied by 1 + this
    taste_weight: float = 1.0
    #: with a published preference model, a recommended item is multiplied by 1 + this times
    #: its recommendation score relative to the person's best (the model ranks; the
    #: recommender only nudges what the person has never bought)
    recommendation_weight: float = 0.5
    #: pseudo-count of an association rule's lift: a rule seen ``count`` times multiplies an
    #: item's pseudo-count by ``1 + (lift - 1) x count / (count + this)``
    association_strength: float = 20.0
    #: a price ``x`` times the item's usual price multiplies its odds by ``x ** this``: the
    #: mean of 1,851 published brand-choice price elasticities (Bijmolt, van Heerde & Pieters,
    #: Journal of Marketing Research 42(2), 2005: -2.62), not fitted to any one data set
    price_elasticity: float = -2.62
    #: log odds added by a feature ad or promotion flag, and by an in-store display flag
    feature_log_odds: float = 0.5
    display_log_odds: float = 0.5
    #: trials before a group's counts are cited as a reason ("popular with at_risk customers")
    min_evidence: float = 30.0
    #: joint posterior draws per decision; propensities are multiples of 1 / n_draws (so an
    #: inverse-propensity weight is at most n_draws)
    n_draws: int = 64


@dataclass(frozen=True)
class Prior:
    """What is known about one item for one person before the counters."""

    #: population prior mean of the response rate (from popularity)
    rate: float
    #: the person's multiplier (batch recommendation score, taste); 1 = no preference
    lift: float = 1.0
    #: why the person would like it (batch reason, taste), cited when it is shown
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class Ranked:
    """One item shown: its position (1-based) and why."""

    item: str
    position: int
    #: the person's posterior mean response rate (lift x group rate)
    score: float
    #: the value drawn for it in the realised draw
    sampled: float
    #: probability that the policy shows it in the top ``slots``
    propensity: float
    #: probability that the policy shows it at exactly this position
    position_propensity: float
    reasons: list[str] = field(default_factory=list)
    #: the person's probability of choosing it among the candidates (None: no preference
    #: model was published for them)
    probability: float | None = None
    #: its catalogue name (None: the catalogue has none)
    name: str | None = None
    #: its catalogue category (None: the catalogue has none)
    category: str | None = None


@dataclass(frozen=True)
class Ranking:
    """The shown items and, for the log, every candidate's probability of being shown."""

    ranked: list[Ranked]
    candidates: list[str]
    p_shown: NDArray[np.float64]
    n_draws: int
    draw: int
    #: the seed of the draws (with the logged inputs, the draws can be replayed exactly)
    seed: int = 0
    #: every candidate's probability of being shown at each slot (candidates x slots)
    p_position: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 0)))


@dataclass(frozen=True)
class PriorArrays:
    """Priors of many candidates at once (what :func:`thompson` uses; built without a
    per-item object when speed matters): arrays aligned with the candidates."""

    rate: NDArray[np.float64]
    lift: NDArray[np.float64]
    #: candidate index -> its prior reasons; called for the shown items only
    reasons: Callable[[int], Sequence[str]] = lambda _: ()
    #: the person's choice probability of each candidate (``segone.models.preference``)
    probability: NDArray[np.float64] | None = None
    #: candidate index -> its name (None: no name in the catalogue)
    name: Callable[[int], str | None] = lambda _: None
    #: candidate index -> its category (None: none in the catalogue)
    category: Callable[[int], str | None] = lambda _: None
    #: standard deviation of ``lift`` under the preference model's posterior (the person's
    #: Dirichlet over items): Thompson sampling draws the person's lift too, so it explores
    #: around what the model does not know about them (None: the lift is taken as known)
    lift_sd: NDArray[np.float64] | None = None
    #: ``score`` is the posterior mean ``rate x lift`` divided by this (with the preference
    #: model: ``base_rate x n``, so that the score is the person's choice probability times the
    #: learned response rate over the prior one, not a rate that saturates at 1)
    scale: float = 1.0

    @classmethod
    def of(cls, candidates: Sequence[str], priors: Mapping[str, Prior], base_rate: float) -> Self:
        pri = [priors.get(i) for i in candidates]
        n = len(pri)
        why = {k: p.reasons for k, p in enumerate(pri) if p is not None and p.reasons}
        return cls(
            np.fromiter((base_rate if p is None else p.rate for p in pri), np.float64, n),
            np.fromiter((1.0 if p is None else p.lift for p in pri), np.float64, n),
            lambda k: why.get(k, ()),
        )


def escape(part: str) -> str:
    """A key part with ``%`` and ``|`` percent-escaped."""
    return part.replace("%", "%25").replace("|", "%7C") if ("|" in part or "%" in part) else part


def keys_for(placement: str, group: str, item: str) -> list[str]:
    """The counter keys one feedback on ``item`` updates: [global, group] (``|``-separated,
    ``|`` and ``%`` inside a part percent-escaped so keys never collide)."""
    p, i = escape(placement), escape(item)
    return [f"ts|{p}|{i}", f"ts|{p}|{escape(group)}|{i}"]


def key_lists(placement: str, group: str, items: Sequence[str]) -> tuple[list[str], list[str]]:
    """:func:`keys_for` of many items: (global keys, group keys), aligned with ``items``."""
    g = f"ts|{escape(placement)}|"
    c = f"{g}{escape(group)}|"
    esc = [escape(i) for i in items]
    return [g + i for i in esc], [c + i for i in esc]


def update(kind: str, *, recorded: Collection[str] = ()) -> Counts:
    """(d_successes, d_trials) for one feedback on a shown item.

    An impression is a trial; a click or a conversion is a success, counted once per decision
    and item (a conversion after a click adds nothing; without a recorded click it counts).
    A success that arrives before its impression brings the trial with it, so successes never
    exceed trials. ``recorded``: the kinds already recorded for this decision and item, which
    makes repeated feedback add nothing.
    """
    if kind not in FEEDBACK_KINDS:
        raise DecisionError(f"unknown feedback kind {kind!r}; expected one of {FEEDBACK_KINDS}")
    seen = set(recorded)
    trial = 0.0 if seen else 1.0
    if kind == "impression":
        return (0.0, trial)
    if seen & {"click", "conversion"}:
        return _ZERO
    return (1.0, trial)


def rank(
    candidates: Sequence[str],
    priors: Mapping[str, Prior] | PriorArrays,
    stats: Mapping[str, Counts],
    *,
    slots: int,
    rng: np.random.Generator,
    n_draws: int | None = None,
    placement: str = "default",
    group: str = UNKNOWN_GROUP,
    params: PolicyParams | None = None,
) -> list[Ranked]:
    """The top ``slots`` of ``candidates`` by one Thompson draw, with propensities and reasons.

    ``stats`` maps counter keys (:func:`keys_for`) to (successes, trials); missing keys are 0.
    An item without a prior gets the base rate.
    """
    return thompson(
        candidates,
        priors,
        stats,
        slots=slots,
        rng=rng,
        n_draws=n_draws,
        placement=placement,
        group=group,
        params=params,
    ).ranked


def _counts(stats: Mapping[str, Counts], keys: list[str]) -> NDArray[np.float64]:
    flat = chain.from_iterable(map(stats.get, keys, repeat(_ZERO)))
    arr = np.fromiter(flat, np.float64, 2 * len(keys)).reshape(len(keys), 2)
    arr = np.maximum(arr, 0.0)
    arr[:, 0] = np.minimum(arr[:, 0], arr[:, 1])  # a success is also a trial
    return arr


def thompson(
    candidates: Sequence[str],
    priors: Mapping[str, Prior] | PriorArrays,
    stats: Mapping[str, Counts],
    *,
    slots: int,
    rng: np.random.Generator,
    n_draws: int | None = None,
    placement: str = "default",
    group: str = UNKNOWN_GROUP,
    params: PolicyParams | None = None,
    keys: tuple[list[str], list[str]] | None = None,
) -> Ranking:
    """:func:`rank`, also returning every candidate's probability of being shown (for the log).

    ``keys``: :func:`key_lists` of the candidates, when the caller has them already.
    """
    prm = params or PolicyParams()
    d = int(n_draws or prm.n_draws)
    if d < 1 or slots < 1:
        raise DecisionError("slots and n_draws must be at least 1")
    items = list(candidates)
    n = len(items)
    if n == 0:
        return Ranking([], [], np.zeros(0), d, 0)
    # the draws come from a generator seeded per decision, and the seed is logged: the
    # propensities are the exact shares of these draws, and anyone can replay them
    seed = int(rng.integers(1 << 62))
    draw_rng = np.random.default_rng(seed)
    slots = min(slots, n)
    pa = priors if isinstance(priors, PriorArrays) else PriorArrays.of(items, priors, prm.base_rate)
    gkeys, ckeys = keys or key_lists(placement, group, items)
    both = _counts(stats, gkeys + ckeys)
    glob, grp = both[:n], both[n:]
    m = np.clip(pa.rate, 1e-6, 1 - 1e-6)

    # other groups' counts (the global counter includes this group's) shrink the prior mean
    s_o = np.maximum(glob[:, 0] - grp[:, 0], 0.0)
    t_o = np.maximum(glob[:, 1] - grp[:, 1], s_o)
    mu = (prm.prior_strength * m + s_o) / (prm.prior_strength + t_o)
    a = prm.group_strength * mu + grp[:, 0]
    ab = prm.group_strength + grp[:, 1]
    mean = a / ab
    sd = np.sqrt(mean * (1.0 - mean) / (ab + 1.0))
    lift = pa.lift
    lsd = pa.lift_sd
    # normal draws truncated at +-Z_MAX sd: an item whose highest possible value is below the
    # slots-th best lowest possible value can never be shown, so it is left out of the draws
    # (its propensity is exactly 0) without changing the policy
    if slots < n:
        hi_l, lo_l = (lift, lift) if lsd is None else (lift + Z_MAX * lsd, lift - Z_MAX * lsd)
        hi = np.minimum(mean + Z_MAX * sd, 1.0) * hi_l
        lo = np.maximum(mean - Z_MAX * sd, 0.0) * np.maximum(lo_l, 0.0)
        live = np.flatnonzero(hi >= np.partition(lo, n - slots)[n - slots])
    else:
        live = np.arange(n)
    nl = len(live)
    if nl < n:
        mean_l, sd_l, lift_l = mean[live], sd[live], lift[live]
        lsd_l = None if lsd is None else lsd[live]
    else:
        mean_l, sd_l, lift_l, lsd_l = mean, sd, lift, lsd
    # negated values: the top of each draw is the start of its ascending partition
    draws = draw_rng.standard_normal((d, nl))
    np.maximum(draws, -Z_MAX, out=draws)
    np.minimum(draws, Z_MAX, out=draws)
    draws *= sd_l
    draws += mean_l
    np.maximum(draws, 0.0, out=draws)
    np.minimum(draws, 1.0, out=draws)
    if lsd_l is None:
        draws *= -lift_l
    else:
        # the person's lift drawn from the preference model's posterior (truncated the same)
        ld = draw_rng.standard_normal((d, nl))
        np.maximum(ld, -Z_MAX, out=ld)
        np.minimum(ld, Z_MAX, out=ld)
        ld *= lsd_l
        ld += lift_l
        np.maximum(ld, 0.0, out=ld)
        draws *= -ld

    rows = np.arange(d)[:, None]
    if slots < nl:
        top = np.argpartition(draws, slots - 1, axis=1)[:, :slots]
    else:
        top = np.broadcast_to(np.arange(nl), (d, nl))
    top = top[rows, np.argsort(draws[rows, top], axis=1, kind="stable")]
    p_shown = np.zeros(n)
    p_shown[live] = np.bincount(top.ravel(), minlength=nl) / d
    at = np.bincount((top * slots + np.arange(slots)).ravel(), minlength=nl * slots)

    j = int(draw_rng.integers(d))
    shown_l = top[j]
    shown = live[shown_l]
    score = np.minimum(mean * lift / pa.scale, 1.0)
    # an item shown although its posterior mean ranks below the slots is there to explore
    above = (score[None, :] > score[shown][:, None]).sum(axis=1).tolist()
    avg = float(mean.sum()) / n
    grp_evidence = (grp[shown, 1] >= prm.min_evidence) & (mean[shown] > avg)
    glob_evidence = (glob[shown, 1] >= prm.min_evidence) & (mu[shown] > avg)
    little = (glob[shown, 1] < prm.min_evidence).tolist()
    score_l = score[shown].tolist()
    sampled = (-draws[j, shown_l]).tolist()
    prop = p_shown[shown].tolist()
    chosen = pa.probability[shown].tolist() if pa.probability is not None else [None] * len(shown)
    pos_prop = (at[shown_l * slots + np.arange(slots)] / d).tolist()
    who = "visitors" if group == UNKNOWN_GROUP else f"{group} customers"
    ranked: list[Ranked] = []
    for pos, i in enumerate(shown.tolist()):
        reasons = list(pa.reasons(i))
        if grp_evidence[pos]:
            reasons.append(f"popular with {who}")
        elif glob_evidence[pos]:
            reasons.append(f"popular in {placement}")
        if above[pos] >= slots or (little[pos] and not reasons):
            reasons.append("explore")
        if not reasons:
            reasons.append(f"top pick for {placement}")
        ranked.append(
            Ranked(
                item=items[i],
                position=pos + 1,
                score=score_l[pos],
                sampled=sampled[pos],
                propensity=prop[pos],
                position_propensity=pos_prop[pos],
                reasons=reasons,
                probability=chosen[pos],
                name=pa.name(i),
                category=pa.category(i),
            )
        )
    p_position = np.zeros((n, slots))
    p_position[live] = at.reshape(nl, slots) / d
    return Ranking(ranked, items, p_shown, d, j, seed, p_position)

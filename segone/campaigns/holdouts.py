"""Sticky control groups: who is held out of a campaign, decided by a hash, never by a draw.

A person's group is a pure function of ``(salt, customer_id)``: the first 8 bytes of
``blake2b(salt + ":" + customer_id)`` read as a number in [0, 1). So a person stays in the same
group across runs, rebuilds and machines, without any state to keep in sync, and the groups are
independent of everything the person did (which is what makes the comparison causal).

Two layers, applied in this order:

1. the **global control group** (default 5%, salt ``[campaigns] global_salt``): people no
   campaign ever contacts. It measures what all campaigns together cause, and it stays the same
   for every campaign, so it is not used up by running many campaigns.
2. the **campaign holdout** (the campaign's ``holdout`` share, salt = the campaign's salt,
   by default its name): people of this campaign's audience who are not contacted by it.

The rest of the audience is split among the campaign's arms by a second hash of the same
salt (``salt + "/arm"``), in proportion to the arms' weights, so arm and holdout assignment are
independent of each other.

**Merges.** Identity resolution may find that two customer ids are one person. The surviving
id keeps its own hash, hence its own group; the absorbed id disappears from the profiles, and its
past assignment rows stay in ``campaign_assignments`` under the absorbed id (history is not
rewritten). A merged person is therefore measured in the group of the surviving id from the
next run on. An unmerge gives the split-off id its own hash-determined group.

Every assignment that a run makes is stored with its time in the warehouse table
``campaign_assignments`` (see :mod:`segone.campaigns.measure`), which is what measurement reads.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from segone.exceptions import HoldoutError

GLOBAL_SALT = "segone-global-control"
GLOBAL_CONTROL = 0.05
_SCALE = float(2**64)

#: the group names stored in ``campaign_assignments.group``
TREATMENT = "treatment"
HOLDOUT = "holdout"
GLOBAL = "global_control"


def bucket(salt: str, customer_id: str) -> float:
    """The person's position in [0, 1) for ``salt``: the same on every run and machine."""
    d = hashlib.blake2b(f"{salt}:{customer_id}".encode(), digest_size=8).digest()
    return int.from_bytes(d, "big") / _SCALE


def buckets(salt: str, customer_ids: Iterable[str]) -> np.ndarray:
    """:func:`bucket` of many ids (1M ids take about a second)."""
    b2 = hashlib.blake2b
    return np.fromiter(
        (
            int.from_bytes(b2(f"{salt}:{c}".encode(), digest_size=8).digest(), "big") / _SCALE
            for c in customer_ids
        ),
        dtype=np.float64,
    )


@dataclass(frozen=True)
class HoldoutSettings:
    """The global control group: its share and salt (``[campaigns]`` in ``segone.toml``)."""

    global_control: float = GLOBAL_CONTROL
    global_salt: str = GLOBAL_SALT

    def __post_init__(self) -> None:
        if not 0.0 <= self.global_control < 1.0:
            raise HoldoutError(f"global_control must be in [0, 1); got {self.global_control}")


@dataclass(frozen=True)
class Assignment:
    """Groups of a list of people, aligned with the ids given."""

    customer_ids: list[str]
    group: np.ndarray  # object array of TREATMENT / HOLDOUT / GLOBAL
    arm: np.ndarray  # object array: the arm name (also for held-out people: the arm they'd get)

    def counts(self) -> dict[str, int]:
        vals, n = np.unique(self.group.astype(str), return_counts=True)
        return {str(v): int(k) for v, k in zip(vals, n, strict=True)}


def assign(
    customer_ids: Sequence[str],
    *,
    salt: str,
    holdout: float,
    arms: Mapping[str, float],
    settings: HoldoutSettings | None = None,
) -> Assignment:
    """Global control, campaign holdout and arm of each person (see the module docstring)."""
    s = settings or HoldoutSettings()
    if not 0.0 <= holdout < 1.0:
        raise HoldoutError(f"holdout must be in [0, 1); got {holdout}")
    if not arms or any(w <= 0 for w in arms.values()):
        raise HoldoutError("a campaign needs at least one arm, each with a positive weight")
    ids = list(customer_ids)
    g = buckets(s.global_salt, ids) < s.global_control
    h = buckets(salt, ids) < holdout
    names = list(arms)
    w = np.array([arms[a] for a in names], dtype=float)
    edges = np.cumsum(w / w.sum())
    edges[-1] = 1.0
    k = np.searchsorted(edges, buckets(salt + "/arm", ids), side="right")
    arm = np.asarray(names, dtype=object)[np.minimum(k, len(names) - 1)]
    group = np.where(g, GLOBAL, np.where(h, HOLDOUT, TREATMENT)).astype(object)
    return Assignment(ids, group, arm)


@dataclass(frozen=True)
class SRM:
    """Sample-ratio mismatch: are the observed group sizes what the shares promise?"""

    observed: dict[str, int]
    expected: dict[str, float]
    chi2: float
    p_value: float

    @property
    def mismatch(self) -> bool:
        """True when p < 0.001: the split is broken (a bug, a filter applied to one group)."""
        return self.p_value < 0.001

    def as_dict(self) -> dict[str, object]:
        return {
            "observed": self.observed,
            "expected": self.expected,
            "chi2": self.chi2,
            "p_value": self.p_value,
            "mismatch": self.mismatch,
        }


def srm(observed: Mapping[str, int], shares: Mapping[str, float]) -> SRM:
    """Chi-square goodness of fit of ``observed`` counts against ``shares`` (renormalised over
    the groups named in ``shares``; a group with no expected share is an error)."""
    extra = set(observed) - set(shares)
    if extra:
        raise HoldoutError(f"groups without an expected share: {sorted(extra)}")
    names = [k for k, v in shares.items() if v > 0]
    obs = np.array([observed.get(k, 0) for k in names], dtype=float)
    total = obs.sum()
    if total == 0 or len(names) < 2:
        return SRM(dict(observed), dict(shares), 0.0, 1.0)
    p = np.array([shares[k] for k in names], dtype=float)
    exp = total * p / p.sum()
    chi2, pv = stats.chisquare(obs, exp)
    return SRM(
        {k: int(observed.get(k, 0)) for k in names},
        {k: float(e) for k, e in zip(names, exp, strict=True)},
        float(chi2),
        float(pv),
    )


def expected_shares(holdout: float, global_control: float) -> dict[str, float]:
    """Expected share of each group among assigned people — what :func:`srm` compares a run's
    counts with. Arms are not part of it: a triggered arm keeps only people who had the
    trigger, which changes the arm shares but not the group shares within them."""
    return {
        TREATMENT: (1 - global_control) * (1 - holdout),
        HOLDOUT: (1 - global_control) * holdout,
        GLOBAL: global_control,
    }

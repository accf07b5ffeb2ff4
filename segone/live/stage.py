"""The lifecycle stage of one person in Python, the same rule as ``segone.segments.lifecycle``
(a test compares both on every profile of a built warehouse).

Stages, first match wins: ``prospect`` (never bought), ``churned``, ``at_risk`` (on P(alive)
where the build fitted it, else on the person's own gap between orders), ``reactivated``,
``new``, ``active``. ``median_gap_days`` is the median ``mean_gap_days`` of all profiles at the
last build (the expected gap of one-time buyers); without it, 90 days.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from segone.live.aggregate import days, parse_ts
from segone.segments.lifecycle import LifecycleSettings

DEFAULT_GAP_DAYS = 90.0


def _num(v: Any) -> float | None:
    if v is None:
        return None
    f = float(v)
    return None if math.isnan(f) else f


def _gap(own: Any, median_gap_days: float | None, s: LifecycleSettings) -> float:
    v = _num(own)
    if v is None:
        v = _num(median_gap_days)
    return max(DEFAULT_GAP_DAYS if v is None else v, s.min_gap_days)


def _round1(x: float) -> float:
    """Half away from zero, as the warehouse rounds."""
    return math.copysign(math.floor(abs(x) * 10 + 0.5), x) / 10


def expected_gap_days(
    view: Mapping[str, Any], settings: LifecycleSettings, median_gap_days: float | None
) -> float:
    """The gap the person's lifecycle is judged by (``profiles.expected_gap_days``)."""
    return _round1(_gap(view.get("mean_gap_days"), median_gap_days, settings))


def lifecycle_stage(
    view: Mapping[str, Any],
    settings: LifecycleSettings,
    median_gap_days: float | None,
    now: datetime | None = None,
) -> str:
    """prospect, new, active, at_risk, churned or reactivated for one profile.

    ``now`` is the time ``recency_days`` was computed at (the view's ``as_of`` by default);
    "new" compares the first order with it.
    """
    return _stage(view, settings, median_gap_days, now, None, fitted=True)


def judge(
    view: Mapping[str, Any],
    settings: LifecycleSettings,
    median_gap_days: float | None,
    now: datetime | None = None,
    *,
    fitted: bool = True,
) -> tuple[float, str]:
    """(``expected_gap_days``, ``lifecycle_stage``) at once; ``fitted=False`` judges the view as
    if its ``p_alive`` were missing."""
    gap = _gap(view.get("mean_gap_days"), median_gap_days, settings)
    return _round1(gap), _stage(view, settings, median_gap_days, now, gap, fitted=fitted)


def _stage(
    view: Mapping[str, Any],
    s: LifecycleSettings,
    median_gap_days: float | None,
    now: datetime | None,
    gap: float | None,
    *,
    fitted: bool,
) -> str:
    orders = int(_num(view.get("orders")) or 0)
    if orders == 0:
        return "prospect"
    if gap is None:
        gap = _gap(view.get("mean_gap_days"), median_gap_days, s)
    prior = _gap(view.get("prior_gap_days"), median_gap_days, s)
    recency = _num(view.get("recency_days"))
    p_alive = _num(view.get("p_alive")) if fitted else None
    modelled = p_alive is not None and (orders >= 2 or p_alive < 1.0)
    if recency is not None and recency > s.max_inactive_days:
        return "churned"
    if modelled and p_alive is not None:
        if p_alive < s.churned_p_alive:
            return "churned"
        if p_alive < s.at_risk_p_alive:
            return "at_risk"
    elif recency is not None:
        if recency > s.churn_factor * gap:
            return "churned"
        if recency > s.at_risk_factor * gap:
            return "at_risk"
    last_gap = _num(view.get("last_gap_days"))
    if orders >= 2 and last_gap is not None and last_gap > s.churn_factor * prior:
        return "reactivated"
    first = parse_ts(view.get("first_order_at"))
    when = now or parse_ts(view.get("as_of"))
    since_first = days(when, first)
    if since_first is not None and since_first <= s.new_days:
        return "new"
    return "active"

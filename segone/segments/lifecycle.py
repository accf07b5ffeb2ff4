"""Lifecycle stages judged per person: a weekly buyer is at risk sooner than a twice-a-year one.

Each buyer's expected gap between orders is their own mean gap (population median when they
have bought once). Where the build fitted BG/NBD, a repeat buyer's stage follows their
probability of being still active (P(alive)) instead of the gap rule. Stages, first match wins:

* ``prospect``: never bought;
* ``churned``: P(alive) below ``churned_p_alive``; without it, no order for ``churn_factor`` x
  their gap (or, for anyone, ``max_inactive_days``);
* ``at_risk``: P(alive) below ``at_risk_p_alive``; without it, no order for
  ``at_risk_factor`` x their gap;
* ``reactivated``: their latest order came after a silence longer than ``churn_factor`` x the gap
  they had kept before it (they had churned and came back);
* ``new``: first order within ``new_days``;
* ``active``: everyone else who buys.
"""

from __future__ import annotations

from dataclasses import dataclass

import ibis
import ibis.expr.types as ir

STAGES = ("prospect", "new", "active", "at_risk", "churned", "reactivated")


@dataclass(frozen=True)
class LifecycleSettings:
    """``[lifecycle]`` in segone.toml."""

    new_days: float = 30.0
    at_risk_factor: float = 2.0
    churn_factor: float = 4.0
    min_gap_days: float = 7.0  # floor: nobody is at risk a day after buying
    max_inactive_days: float = 730.0
    at_risk_p_alive: float = 0.8
    churned_p_alive: float = 0.5


def lifecycle(p: ibis.Table, s: LifecycleSettings, as_of: ir.TimestampValue) -> ibis.Table:
    """``p`` (profiles with order features) plus ``expected_gap_days`` and ``lifecycle_stage``."""
    median_gap = p.filter(p.mean_gap_days.notnull()).mean_gap_days.median()
    gap = ibis.greatest(
        ibis.coalesce(p.mean_gap_days, median_gap, ibis.literal(90.0)), ibis.literal(s.min_gap_days)
    )
    prior = ibis.greatest(
        ibis.coalesce(p.prior_gap_days, median_gap, ibis.literal(90.0)),
        ibis.literal(s.min_gap_days),
    )
    since_first = (as_of.epoch_seconds() - p.first_order_at.epoch_seconds()) / 86_400.0
    # BG/NBD says nothing about one-time buyers (P(alive) is exactly 1 until they buy again),
    # so they keep the cadence rule; Pareto/NBD does judge them
    modelled = (
        p.p_alive.notnull() & ((p.orders >= 2) | (p.p_alive < 1.0))
        if "p_alive" in p.columns
        else ibis.literal(False)
    )
    p_alive = p.p_alive if "p_alive" in p.columns else ibis.literal(None, type="float64")
    stage = ibis.cases(
        (p.orders == 0, "prospect"),
        (p.recency_days > s.max_inactive_days, "churned"),
        (modelled & (p_alive < s.churned_p_alive), "churned"),
        (modelled & (p_alive < s.at_risk_p_alive), "at_risk"),
        (~modelled & (p.recency_days > s.churn_factor * gap), "churned"),
        (~modelled & (p.recency_days > s.at_risk_factor * gap), "at_risk"),
        ((p.orders >= 2) & (p.last_gap_days > s.churn_factor * prior), "reactivated"),
        (p.first_order_at.notnull() & (since_first <= s.new_days), "new"),
        else_="active",
    )
    return p.mutate(expected_gap_days=gap.round(1), lifecycle_stage=stage)

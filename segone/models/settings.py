"""``[models]`` settings: what `segone build` predicts and how often it refits."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSettings:
    """``[models]`` in segone.toml (docs/configuration.md)."""

    enabled: bool = True
    transaction_model: str = "pareto_nbd"
    horizon_days: int = 90
    clv_months: int = 12
    annual_discount_rate: float = 0.10
    refit_after_days: float = 0.0
    churn: bool = True
    recommendations: int = 10
    #: no longer read (the affinity is the preference model's, its half-life learned): kept
    #: so that older segone.toml files, which set it, still load
    taste_half_life_days: float = 90.0

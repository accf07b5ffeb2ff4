"""Predictions per person: buy-till-you-die, churn, next products, tastes, click probability.

Every model follows the scikit-learn contract (hyperparameters in ``__init__``, ``fit`` returns
``self``, learned state ends in ``_``); ``segone build`` fits and scores them (``pipeline``) and
records each fit in the ``models`` table (``registry``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from segone.models.btyd import (
        BetaGeo,
        GammaGamma,
        ParetoNBD,
        customer_lifetime_value,
        model_from_dict,
    )
    from segone.models.churn import ChurnModel
    from segone.models.click import ClickModel, ShrunkCTR
    from segone.models.nextproducts import NextProducts, item_rules, purchase_lines, ranking_metrics
    from segone.models.ope import doubly_robust, ipw, on_policy_value, prob_greater, snipw
    from segone.models.settings import ModelSettings
    from segone.models.summary import rfm_summary
    from segone.models.taste import TasteShiftDetector, category_affinity, taste_transitions

# name -> module: each is imported on first use. The package is imported for its settings by
# every command (segone.config), and its models pull in scikit-learn and scipy (seconds).
_LAZY = {
    "BetaGeo": "segone.models.btyd",
    "ChurnModel": "segone.models.churn",
    "ClickModel": "segone.models.click",
    "GammaGamma": "segone.models.btyd",
    "ModelSettings": "segone.models.settings",
    "NextProducts": "segone.models.nextproducts",
    "ParetoNBD": "segone.models.btyd",
    "ShrunkCTR": "segone.models.click",
    "TasteShiftDetector": "segone.models.taste",
    "category_affinity": "segone.models.taste",
    "customer_lifetime_value": "segone.models.btyd",
    "doubly_robust": "segone.models.ope",
    "ipw": "segone.models.ope",
    "item_rules": "segone.models.nextproducts",
    "model_from_dict": "segone.models.btyd",
    "on_policy_value": "segone.models.ope",
    "prob_greater": "segone.models.ope",
    "purchase_lines": "segone.models.nextproducts",
    "ranking_metrics": "segone.models.nextproducts",
    "rfm_summary": "segone.models.summary",
    "snipw": "segone.models.ope",
    "taste_transitions": "segone.models.taste",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "BetaGeo",
    "ChurnModel",
    "ClickModel",
    "GammaGamma",
    "ModelSettings",
    "NextProducts",
    "ParetoNBD",
    "ShrunkCTR",
    "TasteShiftDetector",
    "category_affinity",
    "customer_lifetime_value",
    "doubly_robust",
    "ipw",
    "item_rules",
    "model_from_dict",
    "on_policy_value",
    "prob_greater",
    "purchase_lines",
    "ranking_metrics",
    "rfm_summary",
    "snipw",
    "taste_transitions",
]

"""Predictions per person: buy-till-you-die, churn, next products, tastes, click probability.

Every model follows the scikit-learn contract (hyperparameters in ``__init__``, ``fit`` returns
``self``, learned state ends in ``_``); ``segone build`` fits and scores them (``pipeline``) and
records each fit in the ``models`` table (``registry``).
"""

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

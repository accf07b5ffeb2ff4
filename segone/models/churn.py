"""Churn over a horizon from profile features and P(alive): gradient boosting, time-based labels.

A person "churns" over the horizon when they place no order in it. Training rows are profiles
as of an earlier date ``t0`` labelled with what each buyer did in ``(t0, t0 + horizon]``; the
fitted model is then applied to the profiles as of now. BG/NBD's P(alive) and expected purchases
are features like any other, so the model can only add to what the buy-till-you-die model knows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Self

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from segone.exceptions import ModelInputError
from segone.models.estimator import require_fitted

#: Fewest buyers (as of one horizon back) the model is trained on.
MIN_BUYERS = 50

#: Below this many rows a fit or a prediction runs on one thread.
SMALL_FIT = 20_000

#: Profile columns the model uses when they are present (numbers and flags only).
FEATURES: tuple[str, ...] = (
    "orders",
    "revenue",
    "aov",
    "recency_days",
    "tenure_days",
    "mean_gap_days",
    "last_gap_days",
    "discount_order_share",
    "full_price_item_share",
    "returned_items",
    "items",
    "page_views",
    "pricing_views_30d",
    "events",
    "email_open_rate",
    "email_click_rate",
    "avg_sentiment",
    "support_tickets",
    "devices",
    "days_since_seen",
    "p_alive",
    "expected_purchases",
    "expected_order_value",
)


#: The profile columns to read for the model: the id, ``orders`` (who is a buyer), the features.
PROFILE_COLUMNS: tuple[str, ...] = ("customer_id", *dict.fromkeys(("orders", *FEATURES)))


class ChurnModel(BaseEstimator):
    """P(no order in the horizon) for buyers, by histogram gradient boosting (scikit-learn)."""

    def __init__(
        self,
        *,
        features: Sequence[str] = FEATURES,
        max_iter: int = 200,
        learning_rate: float = 0.08,
        max_leaf_nodes: int = 31,
        min_samples_leaf: int = 40,
        random_state: int = 0,
    ) -> None:
        self.features = features
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.random_state = random_state

    def fit(self, X: pd.DataFrame, churned: npt.ArrayLike) -> Self:
        y = np.asarray(churned)
        if len(y) != len(X):
            raise ModelInputError(f"{len(X)} feature rows but {len(y)} labels")
        if len(y) < MIN_BUYERS:
            raise ModelInputError(
                f"churn: at least {MIN_BUYERS} labelled buyers are needed, got {len(y)}"
            )
        classes = set(np.unique(y).tolist())
        if not classes <= {0, 1} or len(classes) < 2:
            raise ModelInputError("churn labels must be 0/1 and contain both outcomes")
        # a feature with one value for everybody (no web events in an orders-only shop: page
        # views 0 or null for all) carries nothing about this project and only adds noise:
        # only features whose values differ between buyers are used
        self.features_: list[str] = [
            c
            for c in self.features
            if c in X.columns
            and pd.to_numeric(X[c], errors="coerce").astype("float64").nunique(dropna=False) > 1
        ]
        if not self.features_:
            raise ModelInputError(
                "no churn feature varies between the buyers; expected some of "
                f"{list(self.features)}"
            )
        # rows in an order fixed by their values, not by how the warehouse happened to return
        # them nor by the customer ids (salted with the project's secret): early stopping (on
        # from 10,000 rows) holds out rows by position. Rows equal in every value are
        # interchangeable, so ties need no further key.
        M, target = self._matrix(X), y.astype(int)
        order = np.lexsort([target, *M.T[::-1]])
        M, target = M[order], target[order]
        # OpenMP threads cost far more than they save on a few thousand rows (and, on a busy
        # machine, stall the fit): one thread below SMALL_FIT rows
        with threadpool_limits(1 if len(y) < SMALL_FIT else None, user_api="openmp"):
            self.estimator_ = HistGradientBoostingClassifier(
                max_iter=self.max_iter,
                learning_rate=self.learning_rate,
                max_leaf_nodes=self.max_leaf_nodes,
                min_samples_leaf=self.min_samples_leaf,
                random_state=self.random_state,
            ).fit(M, target)
        self.base_rate_ = float(np.mean(y))
        return self

    def _matrix(self, X: pd.DataFrame) -> npt.NDArray[np.float64]:
        # rounded: the warehouse's float sums can differ in their last bits with the order it
        # read the rows in, and a histogram bin edge must not depend on that
        cols = [
            pd.to_numeric(X[c], errors="coerce").astype("float64").round(9)
            if c in X.columns
            else pd.Series(np.nan, index=X.index)
            for c in self.features_
        ]
        return np.column_stack([c.to_numpy() for c in cols]) if cols else np.empty((len(X), 0))

    def predict_proba(self, X: pd.DataFrame) -> npt.NDArray[np.float64]:
        """Probability of churn over the horizon, one per row."""
        require_fitted(self, "estimator_", "fit()")
        with threadpool_limits(1 if len(X) < SMALL_FIT else None, user_api="openmp"):
            p = self.estimator_.predict_proba(self._matrix(X))[:, 1]
        return np.asarray(p, dtype=np.float64)

"""Probability of a click per (person, content, context): regularised logistic model, shrunk CTRs.

::

    model = ClickModel(
        person_features=["segment", "region"],
        item_features=["item_id", "category", "price"],
        context_features=["position"],
        numeric_features=["price"],
    ).fit(impressions, impressions["click"])
    p = model.predict_proba(impressions)[:, 1]              # P(click) of each logged row
    scores = model.rank(person, candidates, {"position": 1})  # one person, best content first

:class:`ClickModel` is an L2-penalised logistic regression on one-hot person, content and context
features plus person x content crosses. Clicks are rare (a few per thousand impressions), so the
penalty does the work: every coefficient starts at 0 and moves only as far as the data push it,
and the unpenalised intercept keeps the mean prediction equal to the training click rate.
Classes are not re-weighted, which would inflate every probability.

:class:`ShrunkCTR` is the empirical-Bayes alternative: click rates of groups (an item, a segment
and item, ...) shrunk toward the rate of the coarser group above them with beta-binomial priors
whose strength is estimated from the data. It is also the "popularity" baseline.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np
import pandas as pd
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize_scalar
from scipy.special import betaln
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression

from segone.exceptions import ClickModelError, NotFittedError

__all__ = ["ClickModel", "ClickModelError", "NotFittedError", "ShrunkCTR"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


def _labels(y: ArrayLike, n: int) -> FloatArray:
    arr = np.asarray(y, dtype=np.float64).ravel()
    if arr.shape[0] != n:
        raise ClickModelError(f"y has {arr.shape[0]} values but X has {n} rows")
    if not np.isin(arr, (0.0, 1.0)).all():
        raise ClickModelError("y must hold clicks as 0/1 (or False/True)")
    return arr


def _require_columns(X: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    if not isinstance(X, pd.DataFrame):
        raise ClickModelError(f"{what} must be a pandas DataFrame, not {type(X).__name__}")
    missing = [c for c in columns if c not in X.columns]
    if missing:
        raise ClickModelError(f"{what} lacks the columns {missing}")


# --------------------------------------------------------------------------------------------
# the logistic click model
# --------------------------------------------------------------------------------------------


@dataclass
class _Encoded:
    """Columns of one frame as category codes (``K`` = unseen) or standardised numbers."""

    codes: dict[str, IntArray] = field(default_factory=dict)
    values: dict[str, FloatArray] = field(default_factory=dict)


class ClickModel(BaseEstimator):
    """P(click | person, content, context) by L2-penalised logistic regression.

    Parameters
    ----------
    person_features:
        Columns describing the person (segment, region, ...).
    item_features:
        Columns describing the content; include the item id to learn a rate per item.
    context_features:
        Columns describing the occasion (slot position, channel, hour, ...).
    numeric_features:
        Those of the above to use as numbers (standardised); all others are one-hot encoded.
        Categories unseen in training contribute nothing (the prediction falls back on the rest).
    crosses:
        Person-or-context x content interactions: ``True`` for every person feature with every
        item feature, ``False`` for none, or explicit ``(person_or_context, item)`` pairs. A
        categorical x categorical cross gets a coefficient per pair of values; a categorical x
        numeric one a slope per category.
    C:
        Inverse L2 penalty (scikit-learn's ``C``); smaller shrinks more toward the global rate.
    cross_scale:
        Cross columns are multiplied by this, so their coefficients are penalised
        ``1 / cross_scale**2`` times as much as main effects (< 1 shrinks interactions harder).
    max_iter:
        Iteration cap of the lbfgs solver.
    random_state:
        Passed to scikit-learn (lbfgs itself is deterministic).

    Attributes (after ``fit``)
    --------------------------
    estimator_:
        The fitted ``sklearn.linear_model.LogisticRegression`` on :meth:`transform`'s matrix.
    categories_:
        Categorical column -> the values seen in training (their order is the code order).
    feature_names_:
        Names of the design-matrix columns (``col=value``, ``a=x*b=y``, ...).
    base_rate_:
        Training click rate.
    """

    def __init__(
        self,
        *,
        person_features: Sequence[str] = (),
        item_features: Sequence[str] = (),
        context_features: Sequence[str] = (),
        numeric_features: Sequence[str] = (),
        crosses: bool | Sequence[tuple[str, str]] = True,
        C: float = 0.1,
        cross_scale: float = 1.0,
        max_iter: int = 2000,
        random_state: int | None = 0,
    ) -> None:
        self.person_features = person_features
        self.item_features = item_features
        self.context_features = context_features
        self.numeric_features = numeric_features
        self.crosses = crosses
        self.C = C
        self.cross_scale = cross_scale
        self.max_iter = max_iter
        self.random_state = random_state

    # -- parameters ----------------------------------------------------------------------------

    def _validate_params(self) -> None:
        left = [*self.person_features, *self.context_features]
        features = [*left, *self.item_features]
        if not features:
            raise ClickModelError("give at least one person, item or context feature")
        if len(set(features)) != len(features):
            raise ClickModelError(f"a column is listed twice among the features: {features}")
        unknown = set(self.numeric_features) - set(features)
        if unknown:
            raise ClickModelError(f"numeric_features not among the features: {sorted(unknown)}")
        for a, b in self._cross_pairs():
            if a not in left or b not in self.item_features:
                raise ClickModelError(
                    f"cross ({a!r}, {b!r}) must pair a person or context feature with an "
                    "item feature"
                )
        if not self.C > 0:
            raise ClickModelError(f"C must be positive, got {self.C}")
        if not self.cross_scale > 0:
            raise ClickModelError(f"cross_scale must be positive, got {self.cross_scale}")

    def _cross_pairs(self) -> list[tuple[str, str]]:
        if self.crosses is True:
            return [(a, b) for a in self.person_features for b in self.item_features]
        if self.crosses is False:
            return []
        return [(str(a), str(b)) for a, b in self.crosses]

    @property
    def _features(self) -> list[str]:
        return [*self.person_features, *self.context_features, *self.item_features]

    def _check_fitted(self) -> None:
        if not hasattr(self, "estimator_"):
            raise NotFittedError("This ClickModel is not fitted yet: call fit(X, y) first.")

    # -- encoding ------------------------------------------------------------------------------

    def _encode(self, X: pd.DataFrame, columns: Sequence[str]) -> _Encoded:
        enc = _Encoded()
        for c in columns:
            if c in self.numeric_features:
                mean, scale = self.scaling_[c]
                x = pd.to_numeric(X[c], errors="coerce").to_numpy(dtype=np.float64)
                # a missing number is treated as the training mean (contributes nothing)
                enc.values[c] = np.nan_to_num((x - mean) / scale, nan=0.0)
            else:
                cats = self.categories_[c]
                codes = pd.Categorical(X[c], categories=cats).codes.astype(np.int64)
                # unseen values (code -1) point at the extra all-zero slot after the real ones
                enc.codes[c] = np.where(codes < 0, len(cats), codes)
        return enc

    def _blocks(self) -> list[tuple[str, str | None, int]]:
        """Design-matrix blocks in column order: (feature or cross first, cross second, width)."""
        blocks: list[tuple[str, str | None, int]] = []
        for c in self._features:
            blocks.append((c, None, 1 if c in self.numeric_features else len(self.categories_[c])))
        for a, b in self._cross_pairs():
            wa = 1 if a in self.numeric_features else len(self.categories_[a])
            wb = 1 if b in self.numeric_features else len(self.categories_[b])
            blocks.append((a, b, wa * wb))
        return blocks

    def transform(self, X: pd.DataFrame) -> sp.csr_matrix:
        """The sparse design matrix the logistic regression sees (one row per row of ``X``)."""
        self._check_fitted()
        _require_columns(X, self._features, "X")
        return self._design(X)

    def _design(self, X: pd.DataFrame) -> sp.csr_matrix:
        enc = self._encode(X, self._features)
        n = len(X)
        rows, cols, vals = [], [], []
        offset = 0
        all_rows = np.arange(n)

        def put(col_index: IntArray, value: FloatArray, valid: NDArray[np.bool_]) -> None:
            rows.append(all_rows[valid])
            cols.append(offset + col_index[valid])
            vals.append(value[valid])

        for a, b, width in self._blocks():
            scale = 1.0 if b is None else self.cross_scale
            parts = [a] if b is None else [a, b]
            index = np.zeros(n, dtype=np.int64)
            value = np.full(n, scale)
            valid = np.ones(n, dtype=bool)
            for c in parts:
                if c in enc.values:
                    value = value * enc.values[c]
                else:
                    k = len(self.categories_[c])
                    valid &= enc.codes[c] < k
                    index = index * k + np.minimum(enc.codes[c], k - 1)
            put(index, value, valid)
            offset += width
        return sp.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
            shape=(n, offset),
        )

    # -- fitting -------------------------------------------------------------------------------

    def fit(self, X: pd.DataFrame, y: ArrayLike) -> Self:
        """Learn the coefficients from logged impressions ``X`` and their clicks ``y``."""
        self._validate_params()
        _require_columns(X, self._features, "X")
        labels = _labels(y, len(X))
        if labels.min() == labels.max():
            raise ClickModelError("y must contain both clicks and non-clicks")
        self.categories_: dict[str, NDArray[Any]] = {}
        self.scaling_: dict[str, tuple[float, float]] = {}
        for c in self._features:
            if c in self.numeric_features:
                x = pd.to_numeric(X[c], errors="coerce").to_numpy(dtype=np.float64)
                mean = float(np.nanmean(x)) if np.isfinite(x).any() else 0.0
                std = float(np.nanstd(x)) if np.isfinite(x).any() else 0.0
                self.scaling_[c] = (mean, std if std > 0 else 1.0)
            else:
                self.categories_[c] = np.asarray(X[c].dropna().unique())
        design = self._design(X)
        self.estimator_ = LogisticRegression(
            C=self.C, max_iter=self.max_iter, random_state=self.random_state
        ).fit(design, labels)
        self.base_rate_ = float(labels.mean())
        self.feature_names_ = self._names()
        self._unpack()
        return self

    def _names(self) -> list[str]:
        def values(c: str) -> list[str]:
            if c in self.numeric_features:
                return [c]
            return [f"{c}={v}" for v in self.categories_[c]]

        names: list[str] = []
        for a, b, _ in self._blocks():
            if b is None:
                names += values(a)
            else:
                names += [f"{u}*{v}" for u in values(a) for v in values(b)]
        return names

    def _unpack(self) -> None:
        """Coefficients as lookup tables, each padded with a 0 for unseen categories."""
        coef = self.estimator_.coef_.ravel()
        self._main: dict[str, FloatArray] = {}
        self._cross: dict[tuple[str, str], FloatArray] = {}
        offset = 0
        for a, b, width in self._blocks():
            block = coef[offset : offset + width]
            offset += width
            if b is None:
                self._main[a] = np.append(block, 0.0) if a in self.categories_ else block
                continue
            ka = len(self.categories_[a]) if a in self.categories_ else 1
            kb = len(self.categories_[b]) if b in self.categories_ else 1
            table = np.zeros((ka + 1, kb + 1))
            table[:ka, :kb] = block.reshape(ka, kb) * self.cross_scale
            self._cross[(a, b)] = table

    # -- prediction ----------------------------------------------------------------------------

    def _term(self, c: str, enc: _Encoded) -> FloatArray:
        if c in enc.values:
            return self._main[c][0] * enc.values[c]
        return self._main[c][enc.codes[c]]

    def _logit(self, left: _Encoded, right: _Encoded, outer: bool) -> FloatArray:
        """Linear score of (left row, right row) pairs: aligned rows, or every pair if outer."""

        def shape(x: NDArray[Any], side: str) -> NDArray[Any]:
            if not outer:
                return x
            return x[:, None] if side == "left" else x[None, :]

        z: FloatArray = np.asarray(self.estimator_.intercept_[0], dtype=np.float64)
        for c in [*self.person_features, *self.context_features]:
            z = z + shape(self._term(c, left), "left")
        for c in self.item_features:
            z = z + shape(self._term(c, right), "right")
        for a, b in self._cross_pairs():
            table = self._cross[(a, b)]
            ia = shape(left.codes[a], "left") if a in left.codes else 0
            ib = shape(right.codes[b], "right") if b in right.codes else 0
            term = table[ia, ib]
            if a in left.values:
                term = term * shape(left.values[a], "left")
            if b in right.values:
                term = term * shape(right.values[b], "right")
            z = z + term
        return z

    def decision_function(self, X: pd.DataFrame) -> FloatArray:
        """Log-odds of a click for each row of ``X``."""
        self._check_fitted()
        _require_columns(X, self._features, "X")
        left = self._encode(X, [*self.person_features, *self.context_features])
        right = self._encode(X, self.item_features)
        return np.broadcast_to(self._logit(left, right, outer=False), (len(X),)).copy()

    def predict_proba(self, X: pd.DataFrame) -> FloatArray:
        """``[P(no click), P(click)]`` for each row of ``X`` (scikit-learn's layout)."""
        p = _sigmoid(self.decision_function(X))
        return np.column_stack([1.0 - p, p])

    def predict_matrix(self, rounds: pd.DataFrame, candidates: pd.DataFrame) -> FloatArray:
        """P(click) of every candidate for every round: shape ``(len(rounds), len(candidates))``.

        ``rounds`` holds the person and context columns (one row per person or occasion),
        ``candidates`` the item columns (one row per piece of content).
        """
        self._check_fitted()
        _require_columns(rounds, [*self.person_features, *self.context_features], "rounds")
        _require_columns(candidates, self.item_features, "candidates")
        left = self._encode(rounds, [*self.person_features, *self.context_features])
        right = self._encode(candidates, self.item_features)
        z = self._logit(left, right, outer=True)
        return _sigmoid(np.broadcast_to(z, (len(rounds), len(candidates))))

    def rank(
        self,
        person_features: Mapping[str, Any] | pd.Series,
        candidates: pd.DataFrame,
        context: Mapping[str, Any] | None = None,
    ) -> pd.Series:
        """P(click) of each candidate for one person in one context, highest first.

        The result is indexed like ``candidates`` (index it by item id to read the winner off
        ``result.index[0]``); ties keep the candidates' order.
        """
        row = {**dict(person_features), **dict(context or {})}
        scores = self.predict_matrix(pd.DataFrame([row]), candidates)[0]
        out = pd.Series(scores, index=candidates.index, name="p_click")
        return out.sort_values(ascending=False, kind="stable")


def _sigmoid(z: ArrayLike) -> FloatArray:
    z = np.asarray(z, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -z))


# --------------------------------------------------------------------------------------------
# empirical-Bayes shrunk click rates
# --------------------------------------------------------------------------------------------


def _fit_strength(clicks: FloatArray, shown: FloatArray, prior: FloatArray, bound: float) -> float:
    """Beta prior strength m maximising the beta-binomial likelihood of the group counts.

    Each group's rate is Beta(m p, m (1 - p)) with ``p`` its parent's rate; a large m means the
    groups differ no more than chance would make them (full shrinkage).
    """
    p = np.clip(prior, 1e-9, 1 - 1e-9)

    def nll(log_m: float) -> float:
        m = np.exp(log_m)
        a, b = m * p, m * (1 - p)
        return -float(np.sum(betaln(clicks + a, shown - clicks + b) - betaln(a, b)))

    res = minimize_scalar(nll, bounds=(np.log(1e-2), np.log(bound)), method="bounded")
    return float(np.exp(res.x))


class ShrunkCTR(BaseEstimator):
    """Click rates of nested groups, each shrunk toward the level above (empirical Bayes).

    ``levels=[["item_id"], ["segment", "item_id"]]`` estimates the global rate, then each
    item's rate shrunk toward it, then each (segment, item) rate shrunk toward its item's:

        rate(group) = (clicks + m * parent_rate) / (impressions + m)

    A row is predicted by the finest level whose group was seen in training.

    Parameters
    ----------
    levels:
        Column lists from coarse to fine (each usually adds columns to the one before).
    prior_strength:
        ``m`` in pseudo-impressions: one number for every level, one per level, or ``None``
        to estimate each level's by maximising the beta-binomial marginal likelihood.
    max_prior_strength:
        Upper bound of the estimate (reached when groups differ by chance only).

    Attributes (after ``fit``)
    --------------------------
    base_rate_:
        Training click rate.
    prior_strength_:
        The ``m`` used at each level.
    rates_:
        One DataFrame per level: the level's columns, ``clicks``, ``impressions``, ``rate``.
    """

    def __init__(
        self,
        *,
        levels: Sequence[Sequence[str]] = (),
        prior_strength: float | Sequence[float] | None = None,
        max_prior_strength: float = 1e6,
    ) -> None:
        self.levels = levels
        self.prior_strength = prior_strength
        self.max_prior_strength = max_prior_strength

    def _columns(self) -> list[str]:
        return list(dict.fromkeys(c for level in self.levels for c in level))

    def _strengths(self) -> list[float | None]:
        if self.prior_strength is None or isinstance(self.prior_strength, int | float):
            return [self.prior_strength] * len(self.levels)
        strengths = [float(m) for m in self.prior_strength]
        if len(strengths) != len(self.levels):
            raise ClickModelError(
                f"prior_strength has {len(strengths)} values for {len(self.levels)} levels"
            )
        return list(strengths)

    def fit(self, X: pd.DataFrame, y: ArrayLike) -> Self:
        """Count clicks and impressions per group and shrink level by level."""
        if any(len(level) == 0 for level in self.levels):
            raise ClickModelError("every level must name at least one column")
        strengths = self._strengths()
        if any(m is not None and not m > 0 for m in strengths):
            raise ClickModelError(f"prior_strength must be positive, got {self.prior_strength}")
        if not self.max_prior_strength > 1e-2:
            raise ClickModelError("max_prior_strength must be larger than 0.01")
        _require_columns(X, self._columns(), "X")
        labels = _labels(y, len(X))
        self.base_rate_ = float(labels.mean())
        self.prior_strength_: list[float] = []
        self.rates_: list[pd.DataFrame] = []
        pred = np.full(len(X), self.base_rate_)
        for level, m in zip(self.levels, strengths, strict=True):
            cols = list(level)
            frame = X[cols].copy()
            frame["__click"] = labels
            frame["__parent"] = pred
            g = frame.groupby(cols, dropna=False, sort=True).agg(
                clicks=("__click", "sum"),
                impressions=("__click", "size"),
                parent=("__parent", "mean"),
            )
            clicks, shown = g["clicks"].to_numpy(float), g["impressions"].to_numpy(float)
            parent = g["parent"].to_numpy(float)
            if m is None:
                m = _fit_strength(clicks, shown, parent, self.max_prior_strength)
            g["rate"] = (clicks + m * parent) / (shown + m)
            self.prior_strength_.append(float(m))
            self.rates_.append(g.reset_index()[[*cols, "clicks", "impressions", "rate"]])
            pred = self._lookup(X, len(self.rates_) - 1, pred)
        return self

    def _lookup(self, X: pd.DataFrame, k: int, fallback: FloatArray) -> FloatArray:
        table = self.rates_[k]
        cols = list(self.levels[k])
        index = pd.MultiIndex.from_frame(table[cols])
        at = index.get_indexer(pd.MultiIndex.from_frame(X[cols]))
        return np.where(at >= 0, table["rate"].to_numpy()[at], fallback)

    def predict_proba(self, X: pd.DataFrame) -> FloatArray:
        """``[P(no click), P(click)]`` for each row of ``X`` (scikit-learn's layout)."""
        if not hasattr(self, "rates_"):
            raise NotFittedError("This ShrunkCTR is not fitted yet: call fit(X, y) first.")
        _require_columns(X, self._columns(), "X")
        p = np.full(len(X), self.base_rate_)
        for k in range(len(self.levels)):
            p = self._lookup(X, k, p)
        return np.column_stack([1.0 - p, p])

    def predict_matrix(self, rounds: pd.DataFrame, candidates: pd.DataFrame) -> FloatArray:
        """P(click) of every candidate for every round: shape ``(len(rounds), len(candidates))``."""
        pairs = rounds.reset_index(drop=True).merge(
            candidates.reset_index(drop=True), how="cross", suffixes=("", "_candidate")
        )
        return self.predict_proba(pairs)[:, 1].reshape(len(rounds), len(candidates))

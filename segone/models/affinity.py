"""The affinity: each person's probability that their next purchase falls in each category.

segone has one affinity, and the preference model (``segone.models.preference``) gives it.
With ``W_c`` the person's recency-weighted purchases in category ``c`` (the model's weights),
``W`` their weights in all, and everyone's pseudo-counts ``b_c`` (``B`` in all: the nested
model's category pseudo-counts, else the sum of the item pseudo-counts in the category)::

    affinity_c = (W_c + b_c) / (W + B)

It is the model's probability that the next purchase is in ``c`` (its item probabilities summed
over the category), shrunk toward everyone's share ``b_c / B`` the more, the fewer purchases
the person has; it is never 0 and sums to 1 over the categories. The build writes it to the
``category_affinity`` table (:func:`affinity_rows`, every category at ``FLOOR`` or above), the
profile's ``category_affinity`` map and ``top_category`` are read from that table, the server
publishes those rows (``tastes``), and ``/v1/decide`` computes the category step of its nested
ranking with :func:`propensity` from the same published weights and pseudo-counts.

Only numpy here: the server imports this at decision time.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

#: categories below this affinity are left out of the table and the profile's map
FLOOR = 0.01


def propensity(
    w_c: NDArray[np.float64] | float,
    w: NDArray[np.float64] | float,
    b_c: NDArray[np.float64] | float,
    b: NDArray[np.float64] | float,
) -> NDArray[np.float64]:
    """``(W_c + b_c) / (W + B)``: the affinity of the categories (see the module docstring)."""
    return np.asarray((np.asarray(w_c) + b_c) / (np.asarray(w) + b), dtype=np.float64)


def affinity_rows(
    person: NDArray[np.intp],
    category: NDArray[np.intp],
    weight: NDArray[np.float64],
    totals: NDArray[np.float64],
    prior: NDArray[np.float64],
    *,
    floor: float = FLOOR,
    skip: NDArray[np.bool_] | None = None,
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float64], NDArray[np.float64]]:
    """``(person, category, affinity, weight)``: every (person, category) whose affinity is at
    least ``floor``, the person's own weight in it (0 for a category they never bought but
    everyone's share lifts above the floor), sorted by person then category.

    ``person, category, weight``: the model's weights (summed here per person and category);
    ``totals``: each person's ``W`` (categories ``skip`` says to leave out weigh in it: lines
    without a category); ``prior``: ``b_c`` per category code."""
    n_cat = len(prior)
    big_b = float(prior.sum())
    key = person.astype(np.int64) * n_cat + category
    uk, inv = np.unique(key, return_inverse=True)
    w_c = np.bincount(inv, weights=weight, minlength=len(uk))
    p_own, c_own = np.divmod(uk, n_cat)
    # categories a person never bought: b_c / (W + B) >= floor, the largest b_c first
    order = np.argsort(-prior, kind="stable")
    cut = floor * (totals + big_b)
    k = np.searchsorted(-prior[order], -cut, side="right")
    p_new = np.repeat(np.arange(len(totals)), k)
    start = np.repeat(np.cumsum(k) - k, k)
    c_new = order[np.arange(len(p_new)) - start]
    fresh = ~np.isin(p_new.astype(np.int64) * n_cat + c_new, uk, assume_unique=False)
    p = np.concatenate([p_own, p_new[fresh]]).astype(np.intp)
    c = np.concatenate([c_own, c_new[fresh]]).astype(np.intp)
    w = np.concatenate([w_c, np.zeros(int(fresh.sum()))])
    aff = propensity(w, totals[p], prior[c], big_b)
    keep = aff >= floor
    if skip is not None:
        keep &= ~skip[c]
    p, c, aff, w = p[keep], c[keep], aff[keep], w[keep]
    o = np.lexsort((c, p))
    return p[o], c[o], aff[o], w[o]

"""Per-person item preferences: what each person will choose next, shrunk toward everyone.

One model at the core of ``/v1/decide`` (and of nothing else that disagrees with it): a
Dirichlet-multinomial over the catalogue.

* **Everyone** (the prior): item ``i`` has a pseudo-count ``a_i``; ``A = sum a_i``. The ``a_i``
  are fitted by maximum marginal likelihood of every person's (weighted) purchase counts under
  the Dirichlet-multinomial (Minka's fixed point), so ``A`` — how much a person's own history
  counts against everyone's — is learned from the data: in a market where people
  stick to their brand ``A`` comes out small and a few purchases dominate; where they wander it
  comes out large.
* **The person**: each purchase occasion (an order line that kept a unit) adds a weight
  ``0.5 ** (age / (H x rhythm))`` to its item, ``age`` in days before the person's latest
  purchase (a person who pauses keeps their tastes) and ``rhythm`` the person's own median days
  between orders (shrunk toward everyone's median for people with few gaps), so the half-life
  ``H`` is counted in the person's own purchase cycles. ``H`` is chosen from a grid by how well
  it predicts every repeat buyer's latest orders (their last fifth, at least one) from the
  ones before them, the prior refitted for each ``H``.
* **How much everyone weighs**, at last: the fitted pseudo-counts times a factor from
  ``SCALES``, chosen with ``H`` on the same held-out orders (the marginal likelihood of
  recency-weighted counts is a guide to ``A``; the held-out next choices are the test).
* **Probability** that the person's next choice among candidates ``C`` is ``i``:
  ``(w_i + a_i) / sum_{j in C} (w_j + a_j)``; never 0 (every ``a_i > 0``).
* **Buy again**: per item, the share of its buyers with a later order who bought it again
  (``repurchase``), shrunk to its category's share and that to everyone's with 5 pseudo-buyers.
  Items whose repurchase share is below ``min_repurchase`` and below ``repurchase_lift`` times
  the share of everyone who bought them at all (durable goods: their owners are no more likely
  than strangers to buy them again) are not offered
  again to people who own them unless a decision asks for it; replenishment items are.

``ItemPreferences().fit(wh, purchase_lines(wh, as_of=t), as_of=t)``; ``table()`` gives one row
per (customer, item bought) with its weight and probability; ``item_params()`` and ``params()``
what the online store needs (the prior and repurchase share of every item), and
:func:`person_weights` each person's weights from their orders and the fitted half-life.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import ibis
import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp
from numpy.typing import NDArray
from scipy.special import digamma
from sklearn.base import BaseEstimator

from segone.exceptions import NotFittedError, PreferenceError
from segone.models.affinity import FLOOR, affinity_rows
from segone.schema import TS
from segone.store.base import Warehouse

if TYPE_CHECKING:
    from segone.models.pipeline import Fit

_DAY = 86_400.0
#: half-lives tried, in the person's own purchase cycles (inf: no decay)
HALF_LIVES: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, math.inf)
#: factors tried on the fitted pseudo-counts (how much everyone's shares weigh)
SCALES: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
PREFERENCES_SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("product_id", pa.string()),
        ("weight", pa.float64()),
        ("probability", pa.float64()),
    ]
)


AFFINITY_SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("category", pa.string()),
        ("affinity", pa.float64()),
        ("share", pa.float64()),
        ("weight", pa.float64()),
    ]
)


def dirichlet_mle(
    rows: NDArray[np.intp],
    cols: NDArray[np.intp],
    w: NDArray[np.float64],
    n_rows: int,
    n_items: int,
    *,
    max_iter: int = 500,
    tol: float = 1e-7,
) -> NDArray[np.float64]:
    """Pseudo-counts ``a`` maximising the Dirichlet-multinomial likelihood of the (possibly
    fractional) counts ``w`` at (rows, cols) (Minka 2000, fixed point; the entries that are 0
    add nothing to the numerator, so sparse data costs its non-zeros)."""
    m = sp.coo_matrix((w, (rows, cols)), shape=(n_rows, n_items)).tocsr()
    m.sum_duplicates()
    m.eliminate_zeros()
    coo = m.tocoo()
    rows, cols, w = coo.row, coo.col, coo.data
    totals = np.asarray(m.sum(axis=1)).ravel()
    share = np.bincount(cols, weights=w / totals[rows], minlength=n_items)
    totals = totals[totals > 0]
    a = (share + 1e-3 * share.sum() / n_items) / max(len(totals), 1)  # mean share, A = 1
    for _ in range(max_iter):
        big_a = a.sum()
        den = float((digamma(totals + big_a) - digamma(big_a)).sum())
        num = np.bincount(cols, weights=digamma(w + a[cols]) - digamma(a[cols]), minlength=n_items)
        new = a * num / den
        # an item nobody chose keeps a small pseudo-count: no probability is ever 0
        new = np.maximum(new, 1e-6 * new.sum() / n_items + 1e-12)
        if np.max(np.abs(new - a) / a) < tol:
            a = new
            break
        a = new
    return np.asarray(a)


def rhythms(
    cust: NDArray[np.intp], ts: NDArray[np.float64], n_cust: int, prior_gaps: float = 2.0
) -> NDArray[np.float64]:
    """Each person's median days between orders, shrunk (on the log scale) toward everyone's
    median with ``prior_gaps`` pseudo-gaps; everyone's median for people with one order."""
    df = pd.DataFrame({"c": cust, "t": ts}).drop_duplicates().sort_values(["c", "t"])
    df["gap"] = df.groupby("c").t.diff()
    g = df[df.gap > 0].groupby("c").gap
    med = g.median()
    n = g.size()
    pop = float(np.median(med)) if len(med) else 30.0
    out = np.full(n_cust, pop)
    if len(med):
        lg = (n * np.log(med) + prior_gaps * math.log(pop)) / (n + prior_gaps)
        out[med.index.to_numpy()] = np.exp(lg.to_numpy())
    return np.maximum(out, 1e-3)


class ItemPreferences(BaseEstimator):
    """Person x item choice probabilities shrunk toward everyone's (see the module docstring)."""

    def __init__(
        self,
        *,
        half_lives: Sequence[float] = HALF_LIVES,
        min_repurchase: float = 0.1,
        repurchase_lift: float = 2.0,
        repurchase_prior: float = 5.0,
        max_iter: int = 500,
        validation_share: float = 0.2,
    ) -> None:
        self.half_lives = half_lives
        self.validation_share = validation_share
        self.min_repurchase = min_repurchase
        self.repurchase_lift = repurchase_lift
        self.repurchase_prior = repurchase_prior
        self.max_iter = max_iter

    def _validate(self) -> None:
        if not self.half_lives or any(not h > 0 for h in self.half_lives):
            raise PreferenceError("ItemPreferences: half_lives must be > 0 (math.inf: no decay)")
        if not 0 < self.validation_share < 1:
            raise PreferenceError("ItemPreferences: validation_share must be within (0, 1)")
        if not 0 <= self.min_repurchase <= 1:
            raise PreferenceError("ItemPreferences: min_repurchase must be within [0, 1]")
        if not self.repurchase_prior > 0 or self.max_iter < 1:
            raise PreferenceError("ItemPreferences: repurchase_prior > 0 and max_iter >= 1")

    # -- fitting ---------------------------------------------------------------------------
    def fit(self, wh: Warehouse, lines: ibis.Table, *, as_of: datetime) -> ItemPreferences:
        """Learn from ``lines`` (columns of ``nextproducts.purchase_lines``) up to ``as_of``;
        categories come from the lines' products (``products``, else the order line)."""
        when = as_of if as_of.tzinfo else as_of.replace(tzinfo=UTC)
        df = occasions(wh, lines, when)
        cats, _ = catalogue_fields(wh)
        return self.fit_frame(df, categories=cats, as_of=when)

    def fit_frame(
        self,
        df: pd.DataFrame,
        *,
        categories: dict[str, str] | None = None,
        as_of: datetime | None = None,
    ) -> ItemPreferences:
        """Learn from occasions: ``customer_id, product_id, t`` (epoch seconds), one row per
        item chosen in an order."""
        self._validate()
        if df.empty:
            raise PreferenceError("ItemPreferences: no purchases to learn from")
        cust_codes, customers = pd.factorize(df.customer_id.astype(str), sort=True)
        item_codes, items = pd.factorize(df.product_id.astype(str), sort=True)
        c = np.asarray(cust_codes, np.intp)
        i = np.asarray(item_codes, np.intp)
        t = df.t.to_numpy(float) / _DAY
        nc, ni = len(customers), len(items)
        self.customers_ = np.asarray(customers, dtype=object)
        self.items_ = np.asarray(items, dtype=object)
        self.rhythm_days_ = rhythms(c, t, nc)
        last = np.full(nc, -np.inf)
        np.maximum.at(last, c, t)
        self.last_ = last

        # the half-life: predict each repeat buyer's latest orders (their last fifth, at
        # least one) from the ones before them
        order_t = pd.DataFrame({"c": c, "t": t})
        n_orders = order_t.groupby("c").t.transform("nunique").to_numpy()
        rank = order_t.groupby("c").t.rank(method="dense", ascending=False).to_numpy()
        n_held = np.maximum(1, np.round(self.validation_share * n_orders))
        held = (rank <= n_held) & (n_orders >= 2)
        before = ~held & np.isin(c, np.unique(c[held]))
        prev_last = np.full(nc, -np.inf)
        np.maximum.at(prev_last, c[before], t[before])
        ref = np.where(np.isfinite(prev_last), prev_last, last)
        train = ~held
        scores: dict[tuple[float, float], float] = {}
        for h in self.half_lives if held.any() else ():
            # the prior is fitted on everyone's history up to their own held-out order
            wt = self._weights(t[train] - ref[c[train]], c[train], h)
            a = dirichlet_mle(c[train], i[train], wt, nc, ni, max_iter=self.max_iter)
            wb = self._weights(t[before] - ref[c[before]], c[before], h)
            for f in SCALES:
                scores[(h, f)] = self._heldout_loss(
                    c[before], i[before], wb, c[held], i[held], a * f, nc
                )
        self.validation_log_loss_ = scores
        # without a repeat buyer there is nothing to validate on: no decay, the fitted prior
        self.half_life_cycles_, self.prior_scale_ = (
            min(scores, key=lambda k: (scores[k], -k[0], abs(math.log(k[1]))))
            if held.any()
            else (math.inf, 1.0)
        )
        # the nested model (category, then item within it): tried on the same held-out
        # orders at the chosen half-life, kept when it predicts them better
        cats = categories or {}
        ccodes, cnames = pd.factorize(
            np.array([cats.get(str(x), "") for x in self.items_], dtype=object)
        )
        self.category_codes_ = np.asarray(ccodes, np.intp)
        self.category_names_ = np.asarray(cnames, dtype=object)
        self.nested_ = False
        self.nested_validation_log_loss_: float | None = None
        if held.any() and len(cnames) > 1 and len(cnames) < ni:
            h = self.half_life_cycles_
            wt = self._weights(t[train] - ref[c[train]], c[train], h)
            cp, wp = self._nested_priors(c[train], i[train], wt, nc)
            wb = self._weights(t[before] - ref[c[before]], c[before], h)
            loss = self._nested_loss(c[before], i[before], wb, c[held], i[held], cp, wp, nc)
            self.nested_validation_log_loss_ = loss
            self.nested_ = loss < scores[(h, self.prior_scale_)]
        w = self._weights(t - last[c], c, self.half_life_cycles_)
        self.prior_ = self.prior_scale_ * dirichlet_mle(c, i, w, nc, ni, max_iter=self.max_iter)
        if self.nested_:
            self.category_prior_, self.within_prior_ = self._nested_priors(c, i, w, nc)
        self.concentration_ = float(self.prior_.sum())
        agg = pd.DataFrame({"c": c, "i": i, "w": w}).groupby(["c", "i"], sort=True).w.sum()
        self.pairs_ = agg.reset_index()
        self.totals_ = np.bincount(self.pairs_.c, weights=self.pairs_.w, minlength=nc)
        self.repurchase_ = self._repurchase(c, i, t, categories or {})
        self.n_occasions_ = len(df)
        self.as_of_ = as_of
        return self

    def _nested_priors(
        self, c: NDArray[np.intp], i: NDArray[np.intp], w: NDArray[np.float64], nc: int
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Pseudo-counts of the categories (per category) and of the items within their
        category (per item), each fitted by maximum marginal likelihood."""
        cc = self.category_codes_
        ncat = int(cc.max()) + 1
        cat_prior = dirichlet_mle(c, cc[i], w, nc, ncat, max_iter=self.max_iter)
        within = np.ones(len(self.items_))
        for k in range(ncat):
            members = np.flatnonzero(cc == k)
            if len(members) < 2:
                continue
            sel = np.isin(i, members)
            if not sel.any():
                within[members] = 1e-3
                continue
            local = np.searchsorted(members, i[sel])
            within[members] = dirichlet_mle(
                c[sel], local, w[sel], nc, len(members), max_iter=self.max_iter
            )
        return cat_prior, within

    def _nested_loss(
        self,
        cb: NDArray[np.intp],
        ib: NDArray[np.intp],
        wb: NDArray[np.float64],
        ch: NDArray[np.intp],
        ih: NDArray[np.intp],
        cat_prior: NDArray[np.float64],
        within: NDArray[np.float64],
        nc: int,
    ) -> float:
        cc = self.category_codes_
        ncat = len(cat_prior)
        own = pd.Series(wb).groupby([cb, ib]).sum()
        own_c = pd.Series(wb).groupby([cb, cc[ib]]).sum()
        tot = np.bincount(cb, weights=wb, minlength=nc)
        t_c = np.bincount(cc, weights=within, minlength=ncat)
        got = own.reindex(pd.MultiIndex.from_arrays([ch, ih])).fillna(0.0).to_numpy()
        got_c = own_c.reindex(pd.MultiIndex.from_arrays([ch, cc[ih]])).fillna(0.0).to_numpy()
        k = cc[ih]
        p = (got_c + cat_prior[k]) / (tot[ch] + cat_prior.sum())
        p *= (got + within[ih]) / (got_c + t_c[k])
        return float(-np.log(p).mean())

    def _weights(
        self, age: NDArray[np.float64], c: NDArray[np.intp], h: float
    ) -> NDArray[np.float64]:
        """``0.5 ** (days before the reference / (h x the person's rhythm))`` (age <= 0)."""
        if math.isinf(h):
            return np.ones(len(age))
        return np.asarray(0.5 ** (-age / (h * self.rhythm_days_[c])))

    def _heldout_loss(
        self,
        cb: NDArray[np.intp],
        ib: NDArray[np.intp],
        wb: NDArray[np.float64],
        ch: NDArray[np.intp],
        ih: NDArray[np.intp],
        a: NDArray[np.float64],
        nc: int,
    ) -> float:
        own = pd.Series(wb).groupby([cb, ib]).sum()
        tot = np.bincount(cb, weights=wb, minlength=nc)
        got = own.reindex(pd.MultiIndex.from_arrays([ch, ih])).fillna(0.0).to_numpy()
        p = (got + a[ih]) / (tot[ch] + a.sum())
        return float(-np.log(p).mean())

    def _repurchase(
        self,
        c: NDArray[np.intp],
        i: NDArray[np.intp],
        t: NDArray[np.float64],
        categories: dict[str, str],
    ) -> NDArray[np.float64]:
        d = pd.DataFrame({"c": c, "i": i, "t": t})
        first = d.groupby(["c", "i"]).t.min().rename("first").reset_index()
        times = d.groupby(["c", "i"]).t.nunique().rename("orders").reset_index()
        first = first.merge(times, on=["c", "i"])
        first["opp"] = first["first"] < self.last_[first.c.to_numpy()]
        first["again"] = first.orders >= 2
        g = first[first.opp].groupby("i").agg(n=("again", "size"), k=("again", "sum"))
        ni = len(self.items_)
        n = np.zeros(ni)
        k = np.zeros(ni)
        n[g.index.to_numpy()] = g.n.to_numpy()
        k[g.index.to_numpy()] = g.k.to_numpy()
        s = self.repurchase_prior
        glob = (k.sum() + 0.5) / (n.sum() + 1.0)
        cat = np.array([categories.get(str(x), "") for x in self.items_], dtype=object)
        codes, _ = pd.factorize(cat)
        cn = np.bincount(codes, weights=n)
        ck = np.bincount(codes, weights=k)
        cat_rate = (ck + s * glob) / (cn + s)
        return np.asarray((k + s * cat_rate[codes]) / (n + s))

    # -- results ---------------------------------------------------------------------------
    def _check(self) -> None:
        if not hasattr(self, "prior_"):
            raise NotFittedError("ItemPreferences is not fitted: call fit() first")

    def probabilities(
        self, customer: str, candidates: Sequence[str] | None = None
    ) -> dict[str, float]:
        """The person's next-choice probability of each candidate (default every item)."""
        self._check()
        pos = {x: k for k, x in enumerate(self.items_)}
        cand = list(self.items_) if candidates is None else list(candidates)
        a_floor = float(self.prior_.min())
        a = np.array([self.prior_[pos[x]] if x in pos else a_floor for x in cand])
        own = np.zeros(len(cand))
        k = np.searchsorted(self.customers_, customer)
        if k < len(self.customers_) and self.customers_[k] == customer:
            rows = self.pairs_[self.pairs_.c == k]
            mine = dict(zip(self.items_[rows.i.to_numpy()], rows.w, strict=True))
            own = np.array([mine.get(x, 0.0) for x in cand])
        p = own + a
        return dict(zip(cand, (p / p.sum()).tolist(), strict=True))

    def table(self) -> pa.Table:
        """One row per (customer, item bought): weight (recency-weighted occasions),
        probability (of being the next choice among the whole catalogue)."""
        self._check()
        pr = self.pairs_
        p = (pr.w.to_numpy() + self.prior_[pr.i.to_numpy()]) / (
            self.totals_[pr.c.to_numpy()] + self.concentration_
        )
        return pa.table(
            {
                "customer_id": pa.array(self.customers_[pr.c.to_numpy()].astype(str)),
                "product_id": pa.array(self.items_[pr.i.to_numpy()].astype(str)),
                "weight": pa.array(pr.w.to_numpy(float)),
                "probability": pa.array(p),
            },
            schema=PREFERENCES_SCHEMA,
        )

    def category_prior(self) -> NDArray[np.float64]:
        """Everyone's pseudo-count of each category (``category_names_``): the nested model's,
        else the sum of its items' pseudo-counts."""
        self._check()
        if self.nested_:
            return np.asarray(self.category_prior_, np.float64)
        n = len(self.category_names_)
        return np.asarray(
            np.bincount(self.category_codes_, weights=self.prior_, minlength=n), np.float64
        )

    def category_affinity(self, *, floor: float = FLOOR) -> pa.Table:
        """THE affinity (``segone.models.affinity``): one row per (customer, category) at
        ``floor`` or above — ``affinity``, the probability that their next purchase is in the
        category (``share`` holds the same number, for readers of the older column), and
        ``weight``, their own recency-weighted purchases in it."""
        self._check()
        pr = self.pairs_
        i = pr.i.to_numpy()
        names = self.category_names_
        p, c, aff, w = affinity_rows(
            pr.c.to_numpy(),
            self.category_codes_[i],
            pr.w.to_numpy(float),
            np.asarray(self.totals_, np.float64),
            self.category_prior(),
            floor=floor,
            skip=np.array([not isinstance(x, str) or not x for x in names], dtype=bool),
        )
        return pa.table(
            {
                "customer_id": pa.array(self.customers_[p].astype(str)),
                "category": pa.array(names[c].astype(str)),
                "affinity": pa.array(aff),
                "share": pa.array(aff),
                "weight": pa.array(w),
            },
            schema=AFFINITY_SCHEMA,
        )

    def buy_again(self) -> NDArray[np.bool_]:
        """Whether each item is offered again to people who own it: its repurchase share is
        at least ``min_repurchase``, or at least ``repurchase_lift`` times the share of
        everyone who bought it at all (its owners are more likely than a stranger to buy it
        again: not a durable, whatever the level of repurchase in the shop)."""
        self._check()
        buyers = np.bincount(self.pairs_.i.to_numpy(), minlength=len(self.items_))
        adoption = buyers / max(len(self.customers_), 1)
        r = self.repurchase_
        return np.asarray((r >= self.min_repurchase) | (r >= self.repurchase_lift * adoption))

    def item_params(self) -> dict[str, dict[str, Any]]:
        """Per item: ``preference_prior`` (``a_i``), ``repurchase`` (share of buyers who buy
        it again) and ``buy_again`` (whether it is offered again to people who own it)."""
        self._check()
        again = self.buy_again()
        out = {
            str(x): {
                "preference_prior": float(a),
                "repurchase": float(r),
                "buy_again": bool(b),
            }
            for x, a, r, b in zip(self.items_, self.prior_, self.repurchase_, again, strict=True)
        }
        if self.nested_:
            # the nested model: category pseudo-count, its sum over categories, the item's
            # pseudo-count within its category and their sum in the category
            cc = self.category_codes_
            t_c = np.bincount(cc, weights=self.within_prior_, minlength=len(self.category_prior_))
            total = float(self.category_prior_.sum())
            for k, x in enumerate(self.items_):
                out[str(x)].update(
                    {
                        "category_prior": float(self.category_prior_[cc[k]]),
                        "category_total": total,
                        "within_prior": float(self.within_prior_[k]),
                        "within_total": float(t_c[cc[k]]),
                    }
                )
        return out

    def params(self) -> dict[str, Any]:
        """What is saved with the fit (``models``) and published (``preference_model``)."""
        self._check()
        return {
            "concentration": self.concentration_,
            "half_life_cycles": None
            if math.isinf(self.half_life_cycles_)
            else self.half_life_cycles_,
            "prior_scale": self.prior_scale_,
            "median_rhythm_days": float(np.median(self.rhythm_days_)),
            "min_repurchase": self.min_repurchase,
            "items": len(self.items_),
            "prior_floor": float(self.prior_.min()),
            "nested": self.nested_,
            "category_concentration": float(self.category_prior_.sum()) if self.nested_ else None,
        }


def build_preferences(wh: Warehouse, when: datetime) -> tuple[Fit | None, str, pa.Table | None]:
    """Fit as of ``when``; the build records the fit in ``models`` once it succeeds (what
    ``publish`` reads: the person's weights are not kept, they are recomputed from their orders
    when the build publishes).

    Returns the fit (None when there is nothing to learn from), a note for the build, and the
    rows of the category affinity (``ItemPreferences.category_affinity``; None without a fit),
    which the build writes to ``category_affinity`` (a table erasure clears).
    """
    from segone.models.association import ItemAssociations
    from segone.models.nextproducts import purchase_lines
    from segone.models.pipeline import Fit

    model = ItemPreferences()
    at = when if when.tzinfo else when.replace(tzinfo=UTC)
    df = occasions(wh, purchase_lines(wh, as_of=at), at)
    cats, names = catalogue_fields(wh)
    try:
        model.fit_frame(df, categories=cats, as_of=at)
    except PreferenceError as exc:
        return None, f"no item preferences ({exc})", None
    item_params = model.item_params()
    # group leverage: the association rules ride on their consequent's parameters, so they
    # are published on its catalogue document with the rest of what decide needs
    assoc = ItemAssociations().fit_frame(df)
    for item, found in assoc.item_rules(names).items():
        if item in item_params:
            item_params[item]["associations"] = found
    rules = assoc.rules()
    fit = Fit(
        "preferences",
        {
            **model.params(),
            "association_rules": len(rules),
            "item_params": item_params,
        },
        window_end=when,
        rows=len(model.customers_),
        metrics={
            "validation_log_loss": {
                f"half_life={'inf' if math.isinf(h) else h},scale={f}": v
                for (h, f), v in model.validation_log_loss_.items()
            },
            "occasions": model.n_occasions_,
            "nested_validation_log_loss": model.nested_validation_log_loss_,
            "association_rules": {k: int((rules.kind == k).sum()) for k in ("basket", "sequence")},
        },
    )
    return fit, "", model.category_affinity()


def catalogue_fields(wh: Warehouse) -> tuple[dict[str, str], dict[str, str]]:
    """Each product's category and name: the catalogue's (``products``), else for the category
    the one its order lines name most often (a shop that loads no catalogue)."""
    tables = set(wh.tables())
    cats: dict[str, str] = {}
    if "order_lines" in tables:
        ln = wh.table("order_lines")
        ln = ln.filter(ln.product_id.notnull() & ln.category.notnull() & (ln.category != ""))
        n = ln.group_by(["product_id", "category"]).aggregate(n=ln.count())
        df = wh.to_arrow(n).to_pandas().sort_values(["n", "category"], ascending=[True, False])
        # the most frequent last (ties: the first category in order), so it wins below
        cats = dict(zip(df.product_id.astype(str), df.category.astype(str), strict=True))
    if "products" not in tables:
        return cats, {}
    p = wh.to_arrow(wh.table("products").select("product_id", "category", "name")).to_pandas()
    p = p[p.product_id.notnull()]
    pid = p.product_id.astype(str)
    has = p.category.notnull() & (p.category.astype(str) != "")
    cats.update(zip(pid[has], p.category[has].astype(str), strict=True))
    names = dict(zip(pid[p.name.notnull()], p.name.dropna().astype(str), strict=True))
    return cats, names


def occasions(wh: Warehouse, lines: ibis.Table, as_of: datetime) -> pd.DataFrame:
    """``customer_id, order_id, product_id, t`` (epoch seconds): one row per item an order
    kept, up to ``as_of`` (``lines``: columns of ``nextproducts.purchase_lines``)."""
    ln = lines.filter(lines.ts <= ibis.literal(as_of, type=TS))
    kept = ln.quantity - ln.returned_quantity.fill_null(0)
    per = ln.group_by(["customer_id", "order_id", "product_id"]).aggregate(
        kept=kept.sum(), ts=ln.ts.min()
    )
    df = wh.to_arrow(per.filter(per.kept > 0)).to_pandas()
    ts = pd.to_datetime(df.ts, utc=True)
    df["t"] = (ts - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    return df[["customer_id", "order_id", "product_id", "t"]]


def person_weights(df: pd.DataFrame, half_life_cycles: float | None) -> pd.DataFrame:
    """``customer_id, product_id, weight`` from :func:`occasions`, as ``ItemPreferences``
    weighs them with that half-life (None: no decay)."""
    if df.empty:
        return pd.DataFrame({"customer_id": [], "product_id": [], "weight": []})
    c, customers = pd.factorize(df.customer_id.astype(str), sort=True)
    t = df.t.to_numpy(float) / _DAY
    c = np.asarray(c, np.intp)
    last = np.full(len(customers), -np.inf)
    np.maximum.at(last, c, t)
    if half_life_cycles is None or math.isinf(half_life_cycles):
        w = np.ones(len(t))
    else:
        rhythm = rhythms(c, t, len(customers))
        w = 0.5 ** (-(t - last[c]) / (half_life_cycles * rhythm[c]))
    out = pd.DataFrame(
        {"customer_id": np.asarray(customers)[c], "product_id": df.product_id.astype(str), "w": w}
    )
    g = out.groupby(["customer_id", "product_id"], sort=True).w.sum().rename("weight")
    return g.reset_index()

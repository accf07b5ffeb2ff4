"""Next-product recommendations: co-occurrence rules, implicit ALS and a per-person blend.

``NextProducts(...).fit(wh, purchase_lines(wh, as_of=t), as_of=t).recommend()`` returns the
``recommendations`` table, one row per customer and recommended product:

=============  =======  ===================================================================
customer_id    string   the person (``customer_id`` of ``record_customers``)
rank           int64    1 = best, consecutive per customer
product_id     string   never a product the person already bought (kept or returned)
score          float64  blended score in [0, 1]; comparable within one customer only
                        (0: filled in by popularity when ``k0=0`` leaves too few)
reason         string   ``because you bought P1, P2`` (the owned products that led to it),
                        ``popular in your segment (<column> = <value>)`` or ``popular``
source         string   ``cooccurrence``, ``als``, ``segment_popular`` or ``popular``: the
                        part of the blend that contributed most to the score
=============  =======  ===================================================================

What counts as a purchase: cancelled orders are not purchases at all. A product is *owned and
liked* (a signal for the rules, ALS and popularity) when some order kept at least one unit of
it (quantity minus returned quantity); a fully returned line is no signal of liking, but the
product is still never recommended back to that person — they know it and sent it back.

Store the result with ``wh.replace("recommendations", ibis.memtable(table))``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from sklearn.base import BaseEstimator
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from segone.exceptions import NextProductsError, NotFittedError
from segone.schema import TS
from segone.store.base import Warehouse

SOURCES = ("cooccurrence", "als", "segment_popular", "popular")
RECOMMENDATIONS_SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("rank", pa.int64()),
        ("product_id", pa.string()),
        ("score", pa.float64()),
        ("reason", pa.string()),
        ("source", pa.string()),
    ]
)
_DAY = 86_400.0
_BASKETS_TMP = "_segone_nextproducts_baskets"


def _ts(when: datetime) -> ir.TimestampValue:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return ibis.literal(when, type=TS)


def _decay(
    as_of: datetime, ts: ir.TimestampValue, half_life_days: float | None
) -> ir.FloatingValue:
    if half_life_days is None:
        return ibis.literal(1.0, type="float64")
    age = (_ts(as_of).epoch_seconds() - ts.epoch_seconds()) / _DAY
    return (-math.log(2) * age / half_life_days).exp()


# -- warehouse expressions --------------------------------------------------------------------
def purchase_lines(
    wh: Warehouse, *, as_of: datetime | None = None, since: datetime | None = None
) -> ibis.Table:
    """Order lines of resolved customers, cancelled orders dropped, ``since < ts <= as_of``.

    Columns: customer_id, order_id, ts, product_id, quantity, returned_quantity.
    """
    orders = wh.table("orders")
    o = orders.filter(orders.status.fill_null("completed") != "cancelled")
    if as_of is not None:
        o = o.filter(o.ts <= _ts(as_of))
    if since is not None:
        o = o.filter(o.ts > _ts(since))
    rc = wh.table("record_customers")
    links = rc.filter(rc.record_table == "orders").select(
        _key=rc.record_key, customer_id=rc.customer_id
    )
    o = o.select("order_id", "ts")
    o = o.join(links, o.order_id == links._key).drop("_key")
    lines = wh.table("order_lines")
    ln = lines.filter(lines.product_id.notnull()).join(o, "order_id")
    return ln.select(
        "customer_id",
        "order_id",
        "ts",
        "product_id",
        "quantity",
        returned_quantity=ln.returned_quantity.fill_null(0),
    )


def baskets(
    lines: ibis.Table, *, as_of: datetime, half_life_days: float | None = None
) -> ibis.Table:
    """What each customer owns and liked up to ``as_of``: one row per (customer, product).

    ``lines`` has the columns of :func:`purchase_lines`. Only orders that kept at least one unit
    count. Columns: customer_id, product_id, orders (orders that kept some), units (kept),
    weight (those orders, each decayed by its age with ``half_life_days``; 1 each without),
    recent (the decay of the latest such order), last_at.
    """
    ln = lines.filter(lines.ts <= _ts(as_of))
    kept = ln.quantity - ln.returned_quantity.fill_null(0)
    per = ln.group_by(["customer_id", "product_id", "order_id"]).aggregate(
        kept=kept.sum(), ts=ln.ts.min()
    )
    per = per.filter(per.kept > 0)
    per = per.mutate(_w=_decay(as_of, per.ts, half_life_days))
    b = per.group_by(["customer_id", "product_id"]).aggregate(
        orders=per.count(), units=per.kept.sum(), weight=per._w.sum(), last_at=per.ts.max()
    )
    return b.mutate(recent=_decay(as_of, b.last_at, half_life_days))


def item_rules(
    baskets: ibis.Table,
    *,
    min_customers: int = 2,
    min_support: float = 0.0,
    min_confidence: float = 0.0,
) -> ibis.Table:
    """Association rules ``antecedent -> consequent`` over customers' baskets.

    A transaction is everything one customer owns (columns customer_id, product_id), so
    "people who bought X also bought Y" counts people, not orders. Columns: antecedent,
    consequent, customers (owning both), support (= customers / N), confidence (= customers /
    owners of the antecedent), lift (= confidence / share of customers owning the consequent).
    """
    b = baskets.select("customer_id", "product_id").distinct()
    total = b.aggregate(_n=b.customer_id.nunique())
    owners = b.group_by("product_id").aggregate(_owners=b.count())
    left = b.rename(antecedent="product_id")
    right = b.rename(_cid="customer_id", consequent="product_id")
    pairs = left.join(
        right, (left.customer_id == right._cid) & (left.antecedent != right.consequent)
    )
    pairs = pairs.group_by(["antecedent", "consequent"]).aggregate(customers=pairs.count())
    pairs = pairs.filter(pairs.customers >= min_customers)
    na = owners.rename(antecedent="product_id", _na="_owners")
    nc = owners.rename(consequent="product_id", _nc="_owners")
    r = pairs.join(na, "antecedent").join(nc, "consequent").cross_join(total)
    both = r.customers.cast("float64")
    r = r.select(
        "antecedent",
        "consequent",
        "customers",
        support=both / r._n,
        confidence=both / r._na,
        lift=both * r._n / (r._na * r._nc),
    )
    return r.filter((r.support >= min_support) & (r.confidence >= min_confidence))


def popularity(baskets: ibis.Table, segments: ibis.Table | None = None) -> ibis.Table:
    """Customers owning each product, overall or per segment (``segments``: customer_id, segment).

    Columns: [segment,] product_id, customers, popularity (the customers, each weighted by the
    recency of their latest purchase: ``recent`` of :func:`baskets`).
    """
    b = baskets
    keys = ["product_id"]
    if segments is not None:
        b = b.join(segments.select("customer_id", "segment"), "customer_id")
        keys = ["segment", "product_id"]
    return b.group_by(keys).aggregate(customers=b.count(), popularity=b.recent.sum())


# -- the estimator -----------------------------------------------------------------------------
class NextProducts(BaseEstimator):
    """Per customer top-k: co-occurrence and ALS from their own history, popularity otherwise.

    A customer who owns ``n`` distinct products gets the personal score with weight
    ``n / (n + k0)`` and the popularity of their segment (shrunk to the global popularity with
    ``segment_prior`` pseudo-customers) with the rest; ``k0=math.inf`` gives pure popularity,
    ``k0=0`` pure personal scores for anyone who owns something. The personal score is
    ``als_share * ALS + (1 - als_share) * co-occurrence``; every part is scaled to a maximum of 1
    over the products the person does not own yet, so the parts are comparable.

    Co-occurrence score of product j: the sum over owned products a of confidence(a -> j).
    ALS confidence of an owned product: ``1 + alpha * weight`` (orders decayed by age).
    """

    def __init__(
        self,
        *,
        min_customers: int = 2,
        min_support: float = 0.0,
        min_confidence: float = 0.0,
        factors: int = 32,
        regularization: float = 0.05,
        alpha: float = 10.0,
        iterations: int = 15,
        half_life_days: float | None = 180.0,
        k0: float = 1.0,
        als_share: float = 0.5,
        segment_column: str | None = None,
        segment_prior: float = 20.0,
        reason_items: int = 3,
        n_threads: int = 1,
        random_state: int | None = None,
    ) -> None:
        self.min_customers = min_customers
        self.min_support = min_support
        self.min_confidence = min_confidence
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.half_life_days = half_life_days
        self.k0 = k0
        self.als_share = als_share
        self.segment_column = segment_column
        self.segment_prior = segment_prior
        self.reason_items = reason_items
        self.n_threads = n_threads
        self.random_state = random_state

    # -- fitting ---------------------------------------------------------------------------
    def _validate(self) -> None:
        def bad(name: str, rule: str) -> NextProductsError:
            return NextProductsError(f"NextProducts: {name}={getattr(self, name)!r} must be {rule}")

        for name in ("min_customers", "factors", "iterations", "reason_items", "n_threads"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise bad(name, "an integer >= 1")
        for name in ("min_support", "min_confidence", "als_share"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise bad(name, "between 0 and 1")
        for name in ("regularization", "alpha", "segment_prior"):
            if not getattr(self, name) >= 0:
                raise bad(name, ">= 0")
        if not self.k0 >= 0:  # also refuses NaN
            raise bad("k0", ">= 0 (math.inf: popularity only)")
        if self.half_life_days is not None and not self.half_life_days > 0:
            raise bad("half_life_days", "> 0 or None (no recency decay)")

    def fit(
        self,
        wh: Warehouse,
        lines: ibis.Table,
        *,
        as_of: datetime | None = None,
        segments: ibis.Table | None = None,
    ) -> NextProducts:
        """Learn from ``lines`` (columns of :func:`purchase_lines`) up to ``as_of``.

        ``as_of`` defaults to the latest line. ``segments`` is a table with ``customer_id`` and
        the column named by ``segment_column`` (e.g. ``profiles``); people in it can be
        recommended to even when they bought nothing.
        """
        self._validate()
        if (segments is None) != (self.segment_column is None):
            raise NextProductsError(
                "NextProducts: pass segments= exactly when segment_column is set"
            )
        if as_of is None:
            latest = wh.execute(lines.ts.max())
            if latest is None or pd.isna(latest):
                raise NextProductsError("NextProducts: no purchase lines to learn from")
            as_of = pd.Timestamp(latest).to_pydatetime()
        lines = lines.filter(lines.ts <= _ts(as_of))
        b = wh.materialize(
            _BASKETS_TMP, baskets(lines, as_of=as_of, half_life_days=self.half_life_days)
        )
        try:
            rules = wh.to_arrow(
                item_rules(
                    b,
                    min_customers=self.min_customers,
                    min_support=self.min_support,
                    min_confidence=self.min_confidence,
                )
            )
            owned = wh.to_arrow(b.select("customer_id", "product_id", "weight"))
            seen = wh.to_arrow(lines.select("customer_id", "product_id").distinct())
            pop = wh.to_arrow(popularity(b))
            seg_pop = members = None
            if segments is not None and self.segment_column is not None:
                if self.segment_column not in segments.columns:
                    raise NextProductsError(
                        f"NextProducts: segments has no column {self.segment_column!r}"
                    )
                seg = segments.select(
                    "customer_id", segment=segments[self.segment_column].cast("string")
                )
                seg = seg.filter(seg.segment.notnull()).distinct()
                members = wh.to_arrow(seg).to_pandas()
                seg_pop = wh.to_arrow(popularity(b, seg)).to_pandas()
        finally:
            wh.drop_staging(_BASKETS_TMP)
        if owned.num_rows == 0:
            raise NextProductsError("NextProducts: nobody kept any product up to as_of")

        self.as_of_ = as_of
        seen_df, owned_df = seen.to_pandas(), owned.to_pandas()
        people = [seen_df.customer_id, owned_df.customer_id]
        if members is not None:
            people.append(members.customer_id)
        self.customers_ = np.sort(pd.unique(pd.concat(people, ignore_index=True)))
        self.items_ = np.sort(pd.unique(seen_df.product_id))
        cust, item = pd.Index(self.customers_), pd.Index(self.items_)
        shape = (len(cust), len(item))
        self.seen_ = _csr(
            cust.get_indexer(seen_df.customer_id),
            item.get_indexer(seen_df.product_id),
            np.ones(len(seen_df)),
            shape,
        )
        self.weights_ = _csr(
            cust.get_indexer(owned_df.customer_id),
            item.get_indexer(owned_df.product_id),
            _fixed(owned_df.weight),
            shape,
        )
        self.n_owned_ = np.diff(self.weights_.indptr)
        self.rules_ = rules
        r = rules.to_pandas()
        ia, ic = item.get_indexer(r.antecedent), item.get_indexer(r.consequent)
        self.confidence_ = _csr(ia, ic, r.confidence.to_numpy(float), (len(item),) * 2)
        self.lift_ = _csr(ia, ic, r.lift.to_numpy(float), (len(item),) * 2)

        p = pop.to_pandas()
        n_buyers = len(np.unique(owned_df.customer_id))
        share = np.zeros(len(item))
        share[item.get_indexer(p.product_id)] = _fixed(p.popularity) / n_buyers
        self.popularity_ = share
        self.segments_ = np.array([], dtype=object)
        self.segment_popularity_ = np.zeros((0, len(item)))
        self.segment_of_ = np.full(len(cust), -1)
        if members is not None and seg_pop is not None:
            self.segments_ = np.sort(members.segment.unique())
            si = pd.Index(self.segments_)
            self.segment_of_[cust.get_indexer(members.customer_id)] = si.get_indexer(
                members.segment
            )
            # a small segment's own counts are noisy: shrink them toward the global shares
            counts = np.zeros((len(si), len(item)))
            counts[si.get_indexer(seg_pop.segment), item.get_indexer(seg_pop.product_id)] = _fixed(
                seg_pop.popularity
            )
            buyers = owned_df[["customer_id"]].drop_duplicates().merge(members, on="customer_id")
            size = buyers.groupby("segment").size().reindex(self.segments_, fill_value=0)
            self.segment_popularity_ = (counts + self.segment_prior * share) / (
                size.to_numpy(float)[:, None] + self.segment_prior
            )

        self.confidence_weights_ = self.weights_.copy()
        self.confidence_weights_.data = 1.0 + self.alpha * self.confidence_weights_.data
        self.item_factors_ = np.zeros((len(item), self.factors), np.float32)
        self.user_factors_ = np.zeros((len(cust), self.factors), np.float32)
        if self.als_share > 0 and math.isfinite(self.k0):
            self._fit_als()
        return self

    def _fit_als(self) -> None:
        # implicit warns (and runs ~10x slower) when OpenBLAS uses its own thread pool
        with threadpool_limits(limits=1, user_api="blas"):
            # confidences are given as 1 + alpha * weight already, hence implicit's alpha = 1
            als = AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=1.0,
                iterations=self.iterations,
                num_threads=self.n_threads,
                random_state=self.random_state,
            )
            als.fit(self.confidence_weights_.astype(np.float32), show_progress=False)
        self.item_factors_ = np.asarray(als.item_factors)
        self.user_factors_ = np.asarray(als.user_factors)

    # -- scoring ---------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "items_"):
            raise NotFittedError(
                "This NextProducts instance is not fitted yet: call fit(wh, lines) first"
            )

    def recommend(self, customers: Iterable[str] | None = None, *, n: int = 10) -> pa.Table:
        """Top ``n`` products per customer (every customer seen in fit when ``customers`` is None).

        Customers unknown to the model get the global popularity. Columns: see the module
        docstring.
        """
        self._check_fitted()
        if not isinstance(n, int) or n < 1:
            raise NextProductsError(f"NextProducts.recommend: n={n!r} must be an integer >= 1")
        ids = (
            self.customers_
            if customers is None
            else np.asarray(pd.unique(pd.Series(list(customers), dtype=object)), dtype=object)
        )
        rows = pd.Index(self.customers_).get_indexer(ids)
        n_items = len(self.items_)
        batch = max(1, (1 << 22) // max(n_items, 1))
        parts = [
            self._recommend_batch(ids[s : s + batch], rows[s : s + batch], n)
            for s in range(0, len(ids), batch)
        ]
        if not parts:
            return RECOMMENDATIONS_SCHEMA.empty_table()
        return pa.concat_tables(parts)

    def _parts(self, rows: np.ndarray) -> tuple[np.ndarray, ...]:
        """Weighted co-occurrence, ALS and popularity parts (rows x items), the unweighted
        popularity, the owned mask and the segment of each row."""
        known = rows >= 0
        r = np.where(known, rows, 0)
        seen = np.zeros((len(rows), len(self.items_)), bool)
        seen[known] = self.seen_[r[known]].toarray() > 0
        n_owned = np.where(known, self.n_owned_[r], 0).astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            w = np.where(n_owned > 0, n_owned / (n_owned + self.k0), 0.0)
        owned = self.weights_[r].copy()
        owned.data[:] = 1.0
        owned = owned.multiply(known[:, None]).tocsr()
        cooc = _scaled(np.asarray((owned @ self.confidence_).todense()), seen)
        als = _scaled(self.user_factors_[r] @ self.item_factors_.T * known[:, None], seen)
        seg = np.where(known, self.segment_of_[r], -1)
        table = np.vstack([self.segment_popularity_, self.popularity_[None, :]])
        pop = _scaled(table[np.where(seg >= 0, seg, len(self.segments_))], seen)
        beta = self.als_share
        return (
            w[:, None] * (1 - beta) * cooc,
            w[:, None] * beta * als,
            (1 - w)[:, None] * pop,
            pop,
            seen,
            seg,
        )

    def _recommend_batch(self, ids: np.ndarray, rows: np.ndarray, n: int) -> pa.Table:
        cooc, als, pop, pop_raw, seen, seg = self._parts(rows)
        total = cooc + als + pop
        # ties, and products without personal evidence when k0 = 0, go to the more popular one
        key = np.where(seen, -np.inf, total + 1e-9 * pop_raw)
        key[key <= 0] = -np.inf
        k = min(n, key.shape[1])
        top = np.argpartition(-key, k - 1, axis=1)[:, :k]
        kv = np.take_along_axis(key, top, axis=1)
        # best first; exact ties broken by product id so that results are reproducible
        order = np.lexsort((top, -kv), axis=1)
        top, kv = np.take_along_axis(top, order, 1), np.take_along_axis(kv, order, 1)
        u, pos = np.nonzero(np.isfinite(kv))
        j = top[u, pos]
        part = np.stack([cooc[u, j], als[u, j], pop[u, j]]).argmax(axis=0)
        which = np.where(total[u, j] > 0, part, 2)
        which = np.where((which == 2) & (seg[u] < 0), 3, which)
        return pa.table(
            {
                "customer_id": ids[u],
                "rank": pos + 1,
                "product_id": self.items_[j],
                "score": total[u, j],
                "reason": self._reasons(rows[u], j, which, seg[u]),
                "source": np.asarray(SOURCES, dtype=object)[which],
            },
            schema=RECOMMENDATIONS_SCHEMA,
        )

    def _reasons(
        self, rows: np.ndarray, items: np.ndarray, which: np.ndarray, seg: np.ndarray
    ) -> np.ndarray:
        """The reason of each recommendation (``which`` indexes SOURCES)."""
        labels = np.array(
            [f"popular in your segment ({self.segment_column} = {v})" for v in self.segments_]
            + ["popular"],
            dtype=object,
        )
        out = labels[np.where(seg >= 0, seg, len(self.segments_))]
        at = np.flatnonzero(which == 0)
        if len(at):
            rec, owned, _ = _expand(self.weights_, rows[at])
            # the owned products with the highest lift to the recommended one
            lift = np.asarray(self.lift_[owned, items[at][rec]]).ravel()
            out[at] = self._because(rec, owned, lift, len(at))
        at = np.flatnonzero(which == 1)
        for s in range(0, len(at), 256):  # chunks bound the memory of the Gram matrices
            chunk = at[s : s + 256]
            rec, owned, contrib = self._als_explained(rows[chunk], items[chunk])
            out[chunk] = self._because(rec, owned, contrib, len(chunk))
        return out

    def _because(
        self, rec: np.ndarray, owned: np.ndarray, strength: np.ndarray, n: int
    ) -> np.ndarray:
        """``because you bought ...``: per recommendation, its strongest owned products."""
        o = np.lexsort((owned, -strength, rec))
        rec, owned, strength = rec[o], owned[o], strength[o]
        first = np.r_[True, rec[1:] != rec[:-1]]
        rank = np.arange(len(rec)) - np.maximum.accumulate(np.where(first, np.arange(len(rec)), 0))
        # the first one is kept even when nothing is positive, so a reason is never empty
        keep = (rank < self.reason_items) & ((strength > 0) | (rank == 0))
        names = self.items_[owned[keep]]
        groups = np.split(names, np.flatnonzero(np.diff(rec[keep])) + 1)
        out = np.empty(n, dtype=object)
        out[np.unique(rec[keep])] = ["because you bought " + ", ".join(g) for g in groups]
        return out

    def _als_explained(
        self, rows: np.ndarray, items: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(recommendation, owned product, its share of the ALS score) for each pair.

        The decomposition of Hu, Koren & Volinsky (2008, section 5), as implicit's
        ``explain``: score_j = sum over owned a of c_a * y_j' W_u y_a, with W_u the inverse of
        the person's confidence-weighted Gram matrix.
        """
        users, inv = np.unique(rows, return_inverse=True)
        y = self.item_factors_.astype(np.float64)
        cw = self.confidence_weights_
        who, a, c = _expand(cw, users)
        # every user here owns something (ALS only speaks for them), so no group is empty
        outer = ((y[a] * (c - 1)[:, None])[:, :, None] * y[a][:, None, :]).astype(np.float64)
        starts = np.flatnonzero(np.r_[True, who[1:] != who[:-1]])
        gram = np.add.reduceat(outer, starts, axis=0)
        gram += y.T @ y + self.regularization * np.eye(y.shape[1])
        z = np.linalg.solve(gram[inv], y[items][:, :, None])[:, :, 0]
        rec, owned, conf = _expand(cw, rows)
        contrib = np.einsum("pf,pf->p", y[owned], z[rec]) * conf
        return rec, owned, contrib

    def als_contributions(self, customer_id: str, product_id: str) -> dict[str, float]:
        """How much each owned product adds to the ALS score of ``product_id`` for a customer."""
        self._check_fitted()
        row = int(pd.Index(self.customers_).get_indexer([customer_id])[0])
        col = int(pd.Index(self.items_).get_indexer([product_id])[0])
        if row < 0 or col < 0:
            raise NextProductsError(f"unknown customer {customer_id!r} or product {product_id!r}")
        _, owned, contrib = self._als_explained(np.array([row]), np.array([col]))
        return dict(zip(self.items_[owned].tolist(), contrib.tolist(), strict=True))


def _expand(m: sp.csr_matrix, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(position in ``rows``, column, value) of every stored entry of those rows, in order."""
    starts, ends = m.indptr[rows], m.indptr[rows + 1]
    counts = ends - starts
    pos = np.repeat(np.arange(len(rows)), counts)
    at = (
        np.repeat(starts, counts)
        + np.arange(counts.sum())
        - np.repeat(np.cumsum(counts) - counts, counts)
    )
    return pos, m.indices[at], m.data[at]


def _csr(
    rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int]
) -> sp.csr_matrix:
    m = sp.csr_matrix((values, (rows, cols)), shape=shape)
    m.sum_duplicates()
    m.sort_indices()
    return m


def _fixed(sums: pd.Series) -> np.ndarray:
    """Float sums from the engine, rounded: parallel summation changes the last bits from run
    to run, and the same data must give the same recommendations."""
    return np.round(sums.to_numpy(float), 9)


def _scaled(scores: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Scores >= 0 over the products not owned yet, scaled to a maximum of 1 per row."""
    s = np.where(seen, 0.0, np.maximum(scores, 0.0))
    top = s.max(axis=1, keepdims=True) if s.shape[1] else np.zeros((len(s), 1))
    return np.divide(s, top, out=np.zeros_like(s, dtype=float), where=top > 0)


def ranking_metrics(
    recommendations: pa.Table | pd.DataFrame, held_out: pa.Table | pd.DataFrame, *, k: int = 10
) -> pd.DataFrame:
    """Per customer of ``held_out`` (customer_id, product_id): hit, recall and NDCG at ``k``.

    Relevance is binary (the customer bought the product in the held-out period); customers
    without recommendations score 0.
    """
    rec = recommendations.to_pandas() if isinstance(recommendations, pa.Table) else recommendations
    truth = held_out.to_pandas() if isinstance(held_out, pa.Table) else held_out
    truth = truth[["customer_id", "product_id"]].drop_duplicates()
    rec = rec.loc[rec["rank"] <= k, ["customer_id", "product_id", "rank"]]
    hits = truth.merge(rec, on=["customer_id", "product_id"], how="left")
    hits["gain"] = np.where(hits["rank"].notna(), 1.0 / np.log2(hits["rank"].fillna(1) + 1), 0.0)
    per = hits.groupby("customer_id").agg(
        relevant=("product_id", "size"), hits=("rank", "count"), dcg=("gain", "sum")
    )
    ideal = np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))
    per["hit"] = (per.hits > 0).astype(float)
    per["recall"] = per.hits / per.relevant
    per["ndcg"] = per.dcg / ideal[np.minimum(per.relevant, k) - 1]
    return per.reset_index()[["customer_id", "relevant", "hit", "recall", "ndcg"]]

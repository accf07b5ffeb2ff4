"""Tastes: a time-decayed category affinity per customer, and a detector of taste shifts."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from segone.exceptions import TasteInputError
from segone.exprs import lit, of
from segone.schema import TS
from segone.store.base import Warehouse

DAY_SECONDS = 86_400.0
PURCHASE = "purchase"
VIEW = "view"
# page and screen calls, and the Segment e-commerce spec's track event, that name a category
VIEW_EVENTS = ("Product Viewed", "Product List Viewed", "Product Clicked")


def category_level(path: ir.StringValue, level: int | None) -> ir.StringValue:
    """The first ``level`` levels of an 'A > B > C' category path (``None``: the whole path),
    re-joined with ' > ' so that 'A>B' and 'A > B' are the same category."""
    parts = path.split(">").map(lambda p: p.strip())
    if level is not None:
        parts = parts[:level]
    return lit(" > ").join(parts)


def taste_signals(wh: Warehouse, *, level: int | None = 2) -> ibis.Table:
    """Every signal of taste the warehouse holds: ``customer_id, ts, category, source``.

    ``source`` is ``purchase`` (one row per order line, cancelled orders and fully returned
    lines left out) or ``view`` (a page/screen call or a product-view track event whose
    properties name a category, or a product whose category the catalogue knows). A line counts
    once whatever its quantity: six pairs of socks say how many, not how much one likes socks.
    """
    rc = wh.table("record_customers")
    products = wh.table("products")
    # the catalogue is append-only: any one category per product will do for a fallback
    cats = products.group_by("product_id").aggregate(_pcat=products.category.max())

    orders = wh.table("orders")
    orders = of(
        orders.filter(orders.status.fill_null("completed") != "cancelled"), rc, "orders", "order_id"
    )
    lines = wh.table("order_lines")
    lines = lines.filter(lines.returned_quantity.fill_null(0) < lines.quantity)
    lines = lines.left_join(cats, "product_id").drop("product_id_right")
    ln = lines.join(orders.select("order_id", "customer_id", "ts"), "order_id")
    bought = ln.select(
        "customer_id",
        "ts",
        category=category_level(ibis.coalesce(ln.category, ln._pcat), level),
        source=lit(PURCHASE),
    )

    ev = wh.table("events")
    props = ev.properties
    is_view = ev.type.isin(["page", "screen"]) | ev.event.isin(list(VIEW_EVENTS))
    ev = ev.filter(is_view).mutate(
        _cat=props["category"].unwrap_as("string"),
        product_id=props["product_id"].unwrap_as("string"),
    )
    ev = ev.left_join(cats, "product_id").drop("product_id_right")
    ev = of(ev, rc, "events", "message_id")
    seen = ev.select(
        "customer_id",
        ts=ev.timestamp,
        category=category_level(ibis.coalesce(ev._cat, ev._pcat), level),
        source=lit(VIEW),
    )
    out = ibis.union(bought, seen, distinct=False)
    return out.filter(out.category.notnull() & (out.category != "") & out.ts.notnull())


def _weight(signals: ibis.Table, view_weight: float) -> ir.FloatingValue:
    return ibis.ifelse(signals.source == VIEW, view_weight, 1.0)


def _ts(at: datetime | ir.TimestampValue) -> ir.TimestampValue:
    if isinstance(at, datetime):
        return ibis.literal(at if at.tzinfo else at.replace(tzinfo=UTC), type=TS)
    return at


def affinity(
    signals: ibis.Table,
    as_of: datetime | ir.TimestampValue,
    *,
    half_life_days: float = 90.0,
    view_weight: float = 0.25,
) -> ibis.Table:
    """``customer_id, category, affinity, share`` from ``taste_signals`` up to ``as_of``.

    A purchase ``d`` days before ``as_of`` adds ``0.5 ** (d / half_life_days)``, a view
    ``view_weight`` times that; ``share`` is the category's part of the customer's total.
    """
    if half_life_days <= 0 or view_weight < 0:
        raise TasteInputError("half_life_days must be > 0 and view_weight >= 0")
    when = _ts(as_of)
    s = signals.filter(signals.ts <= when)
    age = (when.epoch_seconds() - s.ts.epoch_seconds()) / DAY_SECONDS
    s = s.mutate(_w=_weight(s, view_weight) * (-math.log(2) * age / half_life_days).exp())
    a = s.group_by(["customer_id", "category"]).aggregate(affinity=s._w.sum())
    a = a.filter(a.affinity > 0)
    return a.mutate(share=a.affinity / a.affinity.sum().over(group_by="customer_id"))


def category_affinity(
    wh: Warehouse,
    as_of: datetime | ir.TimestampValue,
    *,
    half_life_days: float = 90.0,
    level: int | None = 2,
    view_weight: float = 0.25,
) -> ibis.Table:
    """Each customer's time-decayed affinity to each category, as of any time (see
    ``affinity``); tastes live at the second level of the category path by default."""
    return affinity(
        taste_signals(wh, level=level),
        as_of,
        half_life_days=half_life_days,
        view_weight=view_weight,
    )


def weekly_grid(start: datetime, end: datetime, every_days: int = 7) -> list[datetime]:
    """``start``, ``start + every_days``, … up to ``end`` (UTC), for backfills."""
    if every_days <= 0 or end < start:
        raise TasteInputError("a grid needs every_days >= 1 and end on or after start")
    start = start if start.tzinfo else start.replace(tzinfo=UTC)
    end = end if end.tzinfo else end.replace(tzinfo=UTC)
    out, t = [], start
    while t <= end:
        out.append(t)
        t += timedelta(days=every_days)
    return out


def _grid(at: datetime | Sequence[datetime]) -> ibis.Table:
    dates = [at] if isinstance(at, datetime) else list(at)
    if not dates:
        raise TasteInputError("no as-of dates to detect at")
    dates = [d if d.tzinfo else d.replace(tzinfo=UTC) for d in dates]
    t = ibis.memtable(pa.table({"at": pa.array(sorted(set(dates)), pa.timestamp("us", "UTC"))}))
    return t.select(at=t.at.cast(TS))


def _market(s: ibis.Table, grid: ibis.Table) -> ibis.Table:
    """``at, category, g``: every customer's weighted signals up to each date, as shares (the
    centre every profile is smoothed toward). Whole days are summed once, then each date adds
    its own day up to its time, so this stays small however many customers there are."""
    day = s.ts.truncate("D")
    daily = s.group_by(["category", day.name("d")]).aggregate(m=s._w.sum())
    past = daily.join(grid, daily.d < grid.at.truncate("D")).select("at", "category", "m")
    same = s.join(grid, (s.ts <= grid.at) & (s.ts >= grid.at.truncate("D")))
    same = same.select("at", "category", m=same._w)
    mk = ibis.union(past, same, distinct=False)
    mk = mk.group_by(["at", "category"]).aggregate(m=mk.m.sum())
    return mk.mutate(g=mk.m / mk.m.sum().over(group_by="at")).drop("m")


def log_rising(a: ir.FloatingValue, k: ir.IntegerValue) -> ir.FloatingValue:
    """ln of the rising factorial a (a + 1) … (a + k - 1) = ln Γ(a + k) - ln Γ(a), exactly, for
    whole k >= 0 (the recent counts are whole): no log-gamma function needed from the engine."""
    return ibis.range(0, k).map(lambda j: (a + j).ln()).sums().fill_null(0.0)


class TasteShiftDetector:
    """Fires when a customer's recent purchases concentrate on a category their long-term
    profile gives little weight to.

    At each as-of ``t`` the recent window is ``(t - recent_days, t]`` and counts purchases (a
    shift is declared on what people buy). The long-term profile is every purchase and view
    (weighted ``view_weight``) up to ``t - recent_days``, decayed with ``long_half_life_days``
    from there: ``L_c`` per category, ``H`` in all. Its uncertainty is kept: the share of
    category ``c`` is Beta(``A = L_c + s g_c``, ``B = H + s - A``), the posterior of a
    Dirichlet prior of strength ``s = prior_strength`` centred on the market's category shares
    ``g`` as of ``t``; a short history thus leaves room for tastes not yet seen.

    With ``k`` of the ``n`` recent purchases in the recent top category, the evidence is::

        statistic = 2 ln [ Binomial(k; n, k/n) / BetaBinomial(k; n, A, B) ]

    how much better "the new top now takes k/n of purchases" explains the window than the
    long-term profile does. A customer is a candidate when ``n >= min_recent``,
    ``H >= min_history``, the recent top is not the long-term top and holds at least
    ``min_share`` of the window, and ``statistic >= threshold``. Shifts are rare (in the
    generated store about one buyer in 20 over two years), so the default threshold of 14 asks
    for a likelihood ratio of about a thousand (e ** 7).

    Over a grid of dates a customer fires once per shift: a candidate is a detection unless the
    customer's previous candidate (or previous detection, when ``previous`` transitions are
    given) already named the same new top category. Since a suppressed candidate always repeats
    the last detection's new top, a backfill and week-by-week runs fed their own history give the
    same detections.
    """

    def __init__(
        self,
        *,
        recent_days: float = 120.0,
        long_half_life_days: float = 365.0,
        min_recent: float = 3.0,
        min_history: float = 2.0,
        min_share: float = 0.5,
        threshold: float = 14.0,
        prior_strength: float = 2.0,
        view_weight: float = 0.25,
        level: int | None = 2,
    ) -> None:
        self.recent_days = recent_days
        self.long_half_life_days = long_half_life_days
        self.min_recent = min_recent
        self.min_history = min_history
        self.min_share = min_share
        self.threshold = threshold
        self.prior_strength = prior_strength
        self.view_weight = view_weight
        self.level = level

    def _validate(self) -> None:
        bad = []
        if self.recent_days <= 0:
            bad.append("recent_days must be > 0")
        if self.long_half_life_days <= 0:
            bad.append("long_half_life_days must be > 0")
        if self.prior_strength <= 0:
            bad.append("prior_strength must be > 0 (it keeps every category possible)")
        if not 0 <= self.min_share <= 1:
            bad.append("min_share must be within [0, 1]")
        if self.min_recent <= 0 or self.min_history < 0 or self.view_weight < 0:
            bad.append("min_recent must be > 0; min_history and view_weight >= 0")
        if self.level is not None and self.level < 1:
            bad.append("level must be >= 1 or None")
        if bad:
            raise TasteInputError("; ".join(bad))

    def scores(self, signals: ibis.Table, at: datetime | Sequence[datetime]) -> ibis.Table:
        """One row per (as-of ``at``, customer with at least ``min_recent`` recent purchases):
        the evidence, and whether the customer is a ``candidate`` then (before firing once per
        shift)."""
        self._validate()
        grid = _grid(at)
        window = ibis.interval(seconds=round(self.recent_days * DAY_SECONDS))
        s = signals.mutate(_w=_weight(signals, self.view_weight))
        s = s.filter(s._w > 0)
        per = ["at", "customer_id"]
        # only customers with enough recent purchases can fire: find them first, so the
        # history join below covers a few thousand (date, customer) pairs, not everyone
        bought = s.filter(s.source == PURCHASE)
        xr = bought.join(grid, (bought.ts <= grid.at) & (bought.ts > grid.at - window))
        active = xr.group_by(per).aggregate(n=xr.count())
        active = active.filter(active.n >= self.min_recent)
        x = s.join(active, [s.customer_id == active.customer_id, s.ts <= active.at])
        x = x.select("customer_id", "category", "source", "ts", "_w", "at", "n")
        recent = x.ts > x.at - window
        start = x.at.epoch_seconds() - self.recent_days * DAY_SECONDS
        age = (start - x.ts.epoch_seconds()) / DAY_SECONDS
        decay = (-math.log(2) * age / self.long_half_life_days).exp()
        x = x.mutate(
            _r=recent & (x.source == PURCHASE),
            _l=ibis.ifelse(recent, 0.0, x._w * decay),
        )
        pc = x.group_by([*per, "category"]).aggregate(
            # counts, not sums: whole numbers the rising factorials below can range over
            r=x.count(where=x._r),
            l=x._l.sum(),
            n=x.n.max(),
        )
        pc = pc.mutate(h=pc.l.sum().over(group_by=per))
        pc = pc.join(_market(s, grid), ["at", "category"])
        s0 = self.prior_strength
        pc = pc.mutate(
            _a=pc.l + s0 * pc.g,
            _rr=ibis.row_number().over(group_by=per, order_by=[ibis.desc(pc.r), pc.category]),
            _rl=ibis.row_number().over(group_by=per, order_by=[ibis.desc(pc.l), pc.category]),
        )
        pc = pc.mutate(_p=pc._a / (pc.h + s0))
        new = pc.filter(pc._rr == 0).select(
            *per,
            recent_events="n",
            new_top="category",
            new_top_events="r",
            long_events="h",
            long_share_new="_p",
            _a="_a",
        )
        old = pc.filter((pc._rl == 0) & (pc.l > 0)).select(
            *per, old_top="category", long_share_old="_p"
        )
        out = new.left_join(old, per).drop("at_right", "customer_id_right")
        k, n = out.new_top_events, out.recent_events
        a, b = out._a, out.long_events + s0 - out._a
        fitted = k * (k / n).ln() + ibis.ifelse(n > k, (n - k) * ((n - k) / n).ln(), 0.0)
        # ln BetaBinomial(k; n, a, b) without the binomial coefficient, which cancels
        predictive = log_rising(a, k) + log_rising(b, n - k) - log_rising(a + b, n)
        out = out.mutate(statistic=2 * (fitted - predictive), recent_share=k / n).drop("_a")
        candidate = (
            (out.long_events >= self.min_history)
            & out.old_top.notnull()
            & (out.new_top != out.old_top)
            & (out.recent_share >= self.min_share)
            & (out.statistic >= self.threshold)
        )
        return out.mutate(candidate=candidate.fill_null(False))

    def run(
        self,
        wh: Warehouse,
        at: datetime | Sequence[datetime],
        *,
        previous: ibis.Table | None = None,
        signals: ibis.Table | None = None,
    ) -> ibis.Table:
        """Detections at ``at`` (one date or a grid): ``customer_id, detected_at, old_top,
        new_top`` and the evidence (``statistic, recent_events, new_top_events, recent_share,
        long_events, long_share_new, long_share_old``; long-term shares are posterior means).

        ``previous``: earlier ``transitions`` (only ``kind = 'taste_shift'`` rows are read), so
        an incremental run does not fire again for a shift already reported. ``signals``: a
        precomputed ``taste_signals(wh, level=self.level)`` (e.g. materialised for a sweep).
        """
        sig = taste_signals(wh, level=self.level) if signals is None else signals
        cand = self.scores(sig, at)
        cand = cand.filter(cand.candidate).drop("candidate").rename(detected_at="at")
        return once_per_shift(cand, previous)


def once_per_shift(candidates: ibis.Table, previous: ibis.Table | None = None) -> ibis.Table:
    """Candidates (``customer_id, detected_at, new_top, …``) that start a shift: those whose
    customer's previous candidate or ``previous`` taste_shift transition named another new top."""
    rows = candidates.mutate(_prev=ibis.literal(False))
    if previous is not None:
        pv = previous.filter(previous.kind == "taste_shift")
        given = {
            "customer_id": pv.customer_id,
            "detected_at": pv.at,
            "old_top": pv.from_segment,
            "new_top": pv.to_segment,
            "_prev": ibis.literal(True),
        }
        pv = pv.select(
            **{
                c: given[c].cast(t) if c in given else ibis.null(t)
                for c, t in rows.schema().items()
            }
        )
        rows = ibis.union(rows, pv, distinct=False)
    # on the same date a reported detection comes first, so a re-run does not report it again
    w = ibis.window(group_by="customer_id", order_by=["detected_at", ibis.desc("_prev")])
    rows = rows.mutate(_before=rows.new_top.lag().over(w))
    fresh = ~rows._prev & (rows._before.isnull() | (rows._before != rows.new_top))
    return rows.filter(fresh).drop("_prev", "_before").order_by(["detected_at", "customer_id"])


def taste_transitions(detections: ibis.Table) -> ibis.Table:
    """Detections in the shape of ``transitions``: ``customer_id, from_segment (old top),
    to_segment (new top), at, kind = 'taste_shift'``."""
    d = detections
    return d.select(
        customer_id=d.customer_id.cast("string"),
        from_segment=d.old_top.cast("string"),
        to_segment=d.new_top.cast("string"),
        at=d.detected_at.cast(TS),
        kind=lit("taste_shift"),
    )

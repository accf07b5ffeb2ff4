"""What a campaign caused: assignments and conversions joined in the warehouse, lift with CIs.

The join runs as Ibis expressions (so on any engine): each assigned person's conversions in the
attribution window after their assignment, and their spend in the pre-period before it, are
reduced to a few sums per (group, arm). The statistics then need nothing but those sums:

* response rate per group; the **absolute lift** (treated minus control) with Newcombe's
  hybrid-score interval, and the **relative lift** (ratio) with the log-ratio interval
  (``statsmodels.stats.proportion.confint_proportions_2indep``);
* **incremental conversions** = absolute lift × treated people (interval scaled alike);
* **revenue per person** with **CUPED**: revenue adjusted by the pre-period spend,
  ``Y - θ(X - X̄)`` with θ = cov(X, Y) / var(X) over everyone assigned; the difference of
  adjusted means has a normal interval with Welch's standard error. Pre-period spend is unaffected
  by the campaign, so the adjustment removes variance without bias;
* **SRM**: a χ² test of the group sizes against the shares the campaign promised;
* **sample too small**: when the interval of the absolute lift includes 0 and the people per
  group are fewer than needed to detect the observed effect with 80% power at 5%, the report
  says so and how many would be needed — looking before then is peeking.

The control group of an arm is the people assigned to the campaign and not contacted by it
(its holdout plus the members of the global control group who were in its audience) from the
same population as the arm: for arms drawn at random from the audience (mass, segment,
one-to-one) all their held-out people together; for a triggered arm, the held-out people of
that arm who had the trigger too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import ibis
import numpy as np
import pyarrow as pa
from scipy import stats
from statsmodels.stats.proportion import confint_proportions_2indep  # type: ignore[import-untyped]

from segone.campaigns.holdouts import GLOBAL, HOLDOUT, SRM, TREATMENT
from segone.exceptions import MeasureError
from segone.schema import TS
from segone.store.base import Warehouse

#: Warehouse tables of the campaign layer (created on first use).
TABLES: dict[str, dict[str, str]] = {
    "campaign_assignments": {
        "campaign": "string",
        "run_id": "string",
        "customer_id": "string",
        "group": "string",
        "arm": "string",
        "channel": "string",
        "assigned_at": TS,
    },
    "campaign_exposures": {
        "campaign": "string",
        "run_id": "string",
        "customer_id": "string",
        "arm": "string",
        "channel": "string",
        "exposed_at": TS,
        "sent": "boolean",
        "message_id": "string",
    },
    "campaign_runs": {
        "campaign": "string",
        "run_id": "string",
        "at": TS,
        "steps": "string",
        "srm": "string",
    },
}


def ensure_tables(wh: Warehouse) -> None:
    existing = set(wh.tables())
    for name, cols in TABLES.items():
        if name not in existing:
            wh.backend.create_table(name, schema=ibis.schema(cols))


# -- the statistics (pure; tested by simulation) ---------------------------------------------
@dataclass(frozen=True)
class GroupSums:
    """Sufficient statistics of one group: people, converters, revenue Y, pre-period spend X."""

    n: int
    conversions: int
    y: float = 0.0
    yy: float = 0.0
    x: float = 0.0
    xx: float = 0.0
    xy: float = 0.0

    def __add__(self, o: GroupSums) -> GroupSums:
        return GroupSums(
            self.n + o.n,
            self.conversions + o.conversions,
            self.y + o.y,
            self.yy + o.yy,
            self.x + o.x,
            self.xx + o.xx,
            self.xy + o.xy,
        )

    @property
    def rate(self) -> float:
        return self.conversions / self.n if self.n else math.nan

    @property
    def revenue_per_person(self) -> float:
        return self.y / self.n if self.n else math.nan


def astuple(g: GroupSums) -> tuple[float, ...]:
    return (g.n, g.conversions, g.y, g.yy, g.x, g.xx, g.xy)


Interval = tuple[float, float]


def proportion_lift(
    c_t: Any, n_t: Any, c_c: Any, n_c: Any, alpha: float = 0.05
) -> tuple[Any, tuple[Any, Any], Any, tuple[Any, Any]]:
    """(difference, Newcombe CI, ratio, log-ratio CI) of treated vs control rates; numpy arrays
    work too (simulations). The ratio and its interval are NaN where either group has no
    conversion (a ratio to zero has no finite interval)."""
    c_t, n_t, c_c, n_c = (np.asarray(v, dtype=float) for v in (c_t, n_t, c_c, n_c))
    p_t, p_c = c_t / n_t, c_c / n_c
    lo, hi = confint_proportions_2indep(
        c_t, n_t, c_c, n_c, method="newcomb", compare="diff", alpha=alpha
    )
    # the log-ratio (Katz) interval, as statsmodels' ``method="log", compare="ratio"``
    ok = (c_t > 0) & (c_c > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(ok, p_t / p_c, np.nan)
        se = np.sqrt(1 / c_t - 1 / n_t + 1 / c_c - 1 / n_c)
    z = float(stats.norm.ppf(1 - alpha / 2))
    r_lo = np.where(ok, ratio * np.exp(-z * se), np.nan)
    r_hi = np.where(ok, ratio * np.exp(z * se), np.nan)
    if np.ndim(p_t) == 0:
        return float(p_t - p_c), (float(lo), float(hi)), float(ratio), (float(r_lo), float(r_hi))
    return p_t - p_c, (lo, hi), ratio, (r_lo, r_hi)


def cuped_diff(t: GroupSums, c: GroupSums, alpha: float = 0.05) -> dict[str, float]:
    """Difference of revenue per person, CUPED-adjusted by pre-period spend, with its CI."""
    n = t.n + c.n
    if t.n < 2 or c.n < 2:
        return {
            "diff": math.nan,
            "low": math.nan,
            "high": math.nan,
            "theta": 0.0,
            "raw_diff": math.nan,
        }
    mx = (t.x + c.x) / n
    my = (t.y + c.y) / n
    vx = (t.xx + c.xx) / n - mx * mx
    cxy = (t.xy + c.xy) / n - mx * my
    theta = cxy / vx if vx > 1e-12 else 0.0

    def mean_var(g: GroupSums) -> tuple[float, float, float]:
        ax, ay = g.x / g.n, g.y / g.n
        var_y = (g.yy - g.n * ay * ay) / (g.n - 1)
        var_x = (g.xx - g.n * ax * ax) / (g.n - 1)
        cov = (g.xy - g.n * ax * ay) / (g.n - 1)
        v = max(var_y - 2 * theta * cov + theta * theta * var_x, 0.0)
        return ay - theta * (ax - mx), v, var_y

    mt, vt, rvt = mean_var(t)
    mc, vc, rvc = mean_var(c)
    se = math.sqrt(vt / t.n + vc / c.n)
    z = float(stats.norm.ppf(1 - alpha / 2))
    d = mt - mc
    raw_se = math.sqrt(rvt / t.n + rvc / c.n)
    return {
        "diff": d,
        "low": d - z * se,
        "high": d + z * se,
        "theta": theta,
        "raw_diff": t.y / t.n - c.y / c.n,
        "variance_reduction": 1 - (se / raw_se) ** 2 if raw_se > 0 else 0.0,
    }


def needed_per_group(
    p_c: float, diff: float, alpha: float = 0.05, power: float = 0.8
) -> int | None:
    """People per group to detect ``diff`` from a base rate ``p_c`` (two-sided, normal approx.)."""
    if not diff or not math.isfinite(diff):
        return None
    p_t = min(max(p_c + diff, 1e-9), 1 - 1e-9)
    z = float(stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power))
    return math.ceil(z * z * (p_c * (1 - p_c) + p_t * (1 - p_t)) / (diff * diff))


@dataclass
class ArmReport:
    arm: str
    treated: int
    conversions: int
    rate: float
    revenue_per_person: float
    control_rate: float
    lift: float
    lift_ci: Interval
    relative_lift: float | None
    relative_lift_ci: Interval | None
    incremental_conversions: float
    incremental_conversions_ci: Interval
    revenue_lift_per_person: float
    revenue_lift_ci: Interval
    incremental_revenue: float
    incremental_revenue_ci: Interval
    cuped_variance_reduction: float
    warning: str | None = None
    control_people: int = 0


@dataclass
class CampaignReport:
    campaign: str
    runs: int
    window_days: int
    control: dict[str, Any]
    arms: list[ArmReport]
    srm: dict[str, Any]
    groups: dict[str, int]
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return _clean(asdict(self))


def _clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, float | np.floating):
        return None if not math.isfinite(float(obj)) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def compare(arm: str, t: GroupSums, c: GroupSums, alpha: float = 0.05) -> ArmReport:
    """One arm against the control group."""
    if t.n == 0 or c.n == 0:
        nan = math.nan
        return ArmReport(
            arm,
            t.n,
            t.conversions,
            t.rate,
            t.revenue_per_person,
            c.rate,
            nan,
            (nan, nan),
            None,
            None,
            nan,
            (nan, nan),
            nan,
            (nan, nan),
            nan,
            (nan, nan),
            0.0,
            "no treated or no control people",
        )
    d, (lo, hi), ratio, rci = proportion_lift(t.conversions, t.n, c.conversions, c.n, alpha)
    cu = cuped_diff(t, c, alpha)
    warning = None
    if lo <= 0 <= hi:
        need = needed_per_group(c.rate, float(d), alpha)
        if need is not None and min(t.n, c.n) < need:
            warning = (
                f"sample too small for the effect it shows: {float(d):+.2%} needs about {need:,} "
                f"people per group for 80% power (has {t.n:,} treated, {c.n:,} control)"
            )
        else:
            warning = "no significant difference"
    return ArmReport(
        arm=arm,
        treated=t.n,
        conversions=t.conversions,
        rate=t.rate,
        revenue_per_person=t.revenue_per_person,
        control_rate=c.rate,
        lift=float(d),
        lift_ci=(float(lo), float(hi)),
        relative_lift=ratio - 1 if math.isfinite(ratio) else None,
        relative_lift_ci=(rci[0] - 1, rci[1] - 1) if math.isfinite(ratio) else None,
        incremental_conversions=float(d) * t.n,
        incremental_conversions_ci=(float(lo) * t.n, float(hi) * t.n),
        revenue_lift_per_person=cu["diff"],
        revenue_lift_ci=(cu["low"], cu["high"]),
        incremental_revenue=cu["diff"] * t.n,
        incremental_revenue_ci=(cu["low"] * t.n, cu["high"] * t.n),
        cuped_variance_reduction=cu.get("variance_reduction", 0.0),
        warning=warning,
        control_people=c.n,
    )


# -- the warehouse side ----------------------------------------------------------------------
@dataclass(frozen=True)
class Conversion:
    """What counts as a conversion: an ``order`` (revenue = amount), an ``event`` by name
    (revenue = its ``revenue`` property when present), or rows of a warehouse ``table`` with
    customer_id, ts and revenue (simulations)."""

    kind: str = "order"
    name: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("order", "event", "table"):
            raise MeasureError(f"conversion kind must be order, event or table; got {self.kind!r}")
        if self.kind in ("event", "table") and not self.name:
            raise MeasureError(f"a conversion of kind {self.kind} needs a name")

    @classmethod
    def from_obj(cls, obj: Any) -> Conversion:
        if obj is None:
            return cls()
        if isinstance(obj, str):
            return cls("order") if obj == "order" else cls("event", obj)
        if not isinstance(obj, Mapping):
            raise MeasureError("conversion is 'order', an event name, or {kind, name}")
        return cls(str(obj.get("kind", "order")), obj.get("name"))


def conversions(wh: Warehouse, conv: Conversion) -> ibis.Table:
    """(customer_id, ts, revenue) of every conversion of the definition."""
    if conv.kind == "table":
        t = wh.table(str(conv.name))
        return t.select("customer_id", "ts", revenue=t.revenue.cast("float64"))
    rc = wh.table("record_customers")
    if conv.kind == "order":
        o = wh.table("orders")
        o = o.filter(o.status.isnull() | (o.status != "cancelled"))
        r = rc.filter(rc.record_table == "orders")
        j = o.join(r, o.order_id == r.record_key)
        return j.select(customer_id=r.customer_id, ts=j.ts, revenue=j.amount.fill_null(0.0))
    ev = wh.table("events")
    r = rc.filter(rc.record_table == "events")
    j = ev.join(r, ev.message_id == r.record_key)
    j = j.filter(ibis.ifelse(j.type.isin(["page", "screen"]), j.name, j.event) == conv.name)
    rev = (
        j.properties.cast("json")["revenue"].cast("float64") if "properties" in j.columns else None
    )
    return j.select(
        customer_id=r.customer_id,
        ts=j.timestamp,
        revenue=(rev.fill_null(0.0) if rev is not None else ibis.literal(0.0)),
    )


def person_outcomes(
    wh: Warehouse,
    campaign: str,
    conv: Conversion,
    *,
    window_days: int,
    pre_days: int = 180,
    run_id: str | None = None,
) -> ibis.Table:
    """One row per assigned person: group, arm, converted, revenue in window, pre-period spend.

    A person assigned in several runs is measured from their first assignment (groups are
    sticky, so it is the same group)."""
    ensure_tables(wh)
    a = wh.table("campaign_assignments")
    a = a.filter(a.campaign == campaign)
    if run_id is not None:
        a = a.filter(a.run_id == run_id)
    w = ibis.window(group_by=a.customer_id, order_by=[a.assigned_at, a.run_id])
    a = a.mutate(_r=ibis.row_number().over(w))
    a = a.filter(a._r == 0).select("customer_id", "group", "arm", "assigned_at")
    cv = conversions(wh, conv)
    j = a.left_join(cv, a.customer_id == cv.customer_id)
    win = ibis.interval(days=window_days)
    pre = ibis.interval(days=pre_days)
    in_win = (j.ts > j.assigned_at) & (j.ts <= j.assigned_at + win)
    in_pre = (j.ts <= j.assigned_at) & (j.ts > j.assigned_at - pre)
    per = j.group_by([a.customer_id, "group", "arm"]).aggregate(
        converted=in_win.fill_null(False).any(),
        y=ibis.ifelse(in_win.fill_null(False), j.revenue, 0.0).sum().fill_null(0.0),
        x=ibis.ifelse(in_pre.fill_null(False), j.revenue, 0.0).sum().fill_null(0.0),
    )
    return per


def group_sums(wh: Warehouse, per: ibis.Table) -> dict[tuple[str, str], GroupSums]:
    """(group, arm) -> sums, one aggregate in the engine."""
    agg = per.group_by(["group", "arm"]).aggregate(
        n=per.count(),
        c=per.converted.cast("int64").sum(),
        y=per.y.sum(),
        yy=(per.y * per.y).sum(),
        x=per.x.sum(),
        xx=(per.x * per.x).sum(),
        xy=(per.x * per.y).sum(),
    )
    df = wh.execute(agg)
    out: dict[tuple[str, str], GroupSums] = {}
    for r in df.itertuples(index=False):
        out[(str(r.group), str(r.arm))] = GroupSums(
            int(r.n), int(r.c), float(r.y), float(r.yy), float(r.x), float(r.xx), float(r.xy)
        )
    return out


def report_from_sums(
    campaign: str,
    sums: Mapping[tuple[str, str], GroupSums],
    *,
    arms: Sequence[str],
    expected: Mapping[str, float],
    window_days: int,
    runs: int = 1,
    alpha: float = 0.05,
    pooled: Sequence[str] = (),
) -> CampaignReport:
    """Each arm against held-out people of the same population: the arms in ``pooled`` (those
    drawn at random from the same audience: every kind but ``triggered``) share all their
    held-out people as one control; any other arm is compared with the held-out people of its
    own arm label (a triggered arm keeps only people who had the trigger, in both groups)."""
    from segone.campaigns.holdouts import srm

    zero = GroupSums(0, 0)

    def held(arm: str) -> GroupSums:
        return sums.get((HOLDOUT, arm), zero) + sums.get((GLOBAL, arm), zero)

    shared = zero
    for arm in pooled:
        shared = shared + held(arm)
    control = zero
    reports = []
    for arm in arms:
        c = shared if arm in pooled else held(arm)
        control = control + held(arm)
        reports.append(compare(arm, sums.get((TREATMENT, arm), zero), c, alpha))
    observed: dict[str, int] = {}
    for (g, _a), s in sums.items():
        observed[g] = observed.get(g, 0) + s.n
    test: SRM = srm(observed, expected)
    warnings = []
    if test.mismatch:
        warnings.append(
            f"sample-ratio mismatch (χ² p = {test.p_value:.2g}): the groups are not the sizes "
            "the split promised; do not trust the lift until the cause is found"
        )
    warnings += [f"{r.arm}: {r.warning}" for r in reports if r.warning]
    return CampaignReport(
        campaign=campaign,
        runs=runs,
        window_days=window_days,
        control={
            "people": control.n,
            "conversions": control.conversions,
            "rate": control.rate,
            "revenue_per_person": control.revenue_per_person,
        },
        arms=reports,
        srm=test.as_dict(),
        groups=observed,
        warnings=warnings,
    )


def measure(
    wh: Warehouse,
    campaign: str,
    conv: Conversion,
    *,
    arms: Sequence[str],
    expected: Mapping[str, float],
    window_days: int,
    pre_days: int = 180,
    run_id: str | None = None,
    alpha: float = 0.05,
    pooled: Sequence[str] = (),
) -> CampaignReport:
    """The report of ``campaign`` from its stored assignments (see the module docstring)."""
    ensure_tables(wh)
    runs_t = wh.table("campaign_runs")
    runs = int(wh.execute(runs_t.filter(runs_t.campaign == campaign).count()))
    per = person_outcomes(
        wh, campaign, conv, window_days=window_days, pre_days=pre_days, run_id=run_id
    )
    sums = group_sums(wh, per)
    if not sums:
        raise MeasureError(f"campaign {campaign!r} has no assignments yet: run it first")
    return report_from_sums(
        campaign,
        sums,
        arms=arms,
        expected=expected,
        window_days=window_days,
        runs=runs,
        alpha=alpha,
        pooled=pooled,
    )


def record_assignments(
    wh: Warehouse,
    *,
    campaign: str,
    run_id: str,
    channel: str,
    at: datetime,
    customer_ids: Sequence[str],
    groups: Sequence[str],
    arms: Sequence[str],
) -> None:
    ensure_tables(wh)
    n = len(customer_ids)
    t = pa.table(
        {
            "campaign": pa.array([campaign] * n, pa.string()),
            "run_id": pa.array([run_id] * n, pa.string()),
            "customer_id": pa.array(list(customer_ids), pa.string()),
            "group": pa.array(list(groups), pa.string()),
            "arm": pa.array(list(arms), pa.string()),
            "channel": pa.array([channel] * n, pa.string()),
            "assigned_at": pa.array([at] * n, pa.timestamp("us", tz="UTC")),
        }
    )
    wh.insert("campaign_assignments", ibis.memtable(t))


def record_exposures(
    wh: Warehouse,
    *,
    campaign: str,
    run_id: str,
    channel: str,
    at: datetime,
    rows: Sequence[tuple[str, str, bool, str | None]],
) -> None:
    """(customer_id, arm, sent, message_id) rows of one run."""
    ensure_tables(wh)
    n = len(rows)
    t = pa.table(
        {
            "campaign": pa.array([campaign] * n, pa.string()),
            "run_id": pa.array([run_id] * n, pa.string()),
            "customer_id": pa.array([r[0] for r in rows], pa.string()),
            "arm": pa.array([r[1] for r in rows], pa.string()),
            "channel": pa.array([channel] * n, pa.string()),
            "exposed_at": pa.array([at] * n, pa.timestamp("us", tz="UTC")),
            "sent": pa.array([r[2] for r in rows], pa.bool_()),
            "message_id": pa.array([r[3] for r in rows], pa.string()),
        }
    )
    wh.insert("campaign_exposures", ibis.memtable(t))

"""What `segone build` predicts for every person: scores, churn, and where each model came from.

* ``customer_scores``: BG/NBD P(alive) and expected purchases, Gamma-Gamma order value, CLV
  (all fitted on one row per buyer: frequency, recency, age in days), and each person's e-mail
  click probability (their own rate shrunk towards everyone's, beta-binomial).
* ``tastes``: the time-decayed category affinity of every person and ``taste_shift``
  transitions when recent purchases leave the long-term profile (``segone.models.taste``).
* ``churn_scores``: gradient boosting trained on the profiles as of ``as_of - horizon`` labelled
  with what happened since, applied to the profiles as of ``as_of``.

Every fit is recorded in ``models`` with its version and the data window it saw; with
``refit_after_days > 0`` a build reuses a fit whose data ends less than that many days earlier.
A model that cannot be fitted (too few buyers, no repeat purchases) leaves its scores null and
says why in the returned notes; it never fails the build.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import ibis
import numpy as np
import pandas as pd
import pyarrow as pa

from segone.exceptions import ModelInputError
from segone.exprs import of
from segone.models.btyd import (
    BetaGeo,
    GammaGamma,
    ParetoNBD,
    customer_lifetime_value,
    model_from_dict,
)
from segone.models.churn import ChurnModel
from segone.models.registry import latest_model, save_model
from segone.models.settings import ModelSettings
from segone.models.summary import rfm_summary
from segone.models.taste import TasteShiftDetector, category_affinity, taste_transitions
from segone.schema import TS
from segone.store.base import Warehouse

#: ``[models] transaction_model``: Pareto/NBD by default, because BG/NBD gives every one-time
#: buyer P(alive) = 1 (it only lets people drop out after a repeat purchase), which makes it
#: blind to the largest group of churners; measured in BENCHMARKS.md (lifecycle).
TRANSACTION_MODELS: dict[str, type[BetaGeo] | type[ParetoNBD]] = {
    "pareto_nbd": ParetoNBD,
    "bg_nbd": BetaGeo,
}

SCORE_COLUMNS = (
    "p_alive",
    "expected_purchases",
    "expected_order_value",
    "clv",
    "p_email_click",
)


@dataclass
class ScoreReport:
    """What was fitted or reused, and why anything was left out."""

    fitted: dict[str, int] = field(default_factory=dict)  # model name -> version used
    reused: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        used = ", ".join(
            f"{k} v{v}{' (reused)' if k in self.reused else ''}" for k, v in self.fitted.items()
        )
        return "; ".join([s for s in [used and f"models: {used}", *self.notes] if s])


def transactions(wh: Warehouse, as_of: datetime) -> ibis.Table:
    """Orders (not cancelled) up to ``as_of`` with the person who placed them."""
    o = wh.table("orders")
    cutoff = ibis.literal(as_of, type=TS)
    o = of(
        o.filter((o.status != "cancelled") & (o.ts <= cutoff)),
        wh.table("record_customers"),
        "orders",
        "order_id",
    )
    return o.select("customer_id", "ts", amount=o.amount.fill_null(0.0))


def stage_frame(wh: Warehouse, name: str, df: pd.DataFrame) -> ibis.Table:
    """A temporary table of ``df`` (dropped with ``drop_staging``; unlike an Ibis memtable it
    leaves no copy of personal data behind in the session)."""
    t = pa.Table.from_pandas(df, preserve_index=False)
    i = t.schema.get_field_index("customer_id")
    if i >= 0 and t.schema.field(i).type != pa.string():  # an empty frame has no type
        t = t.set_column(i, "customer_id", t.column(i).cast(pa.string()))
    return wh.stage(name, t, append=False)


def _naive(t: datetime) -> datetime:
    return t.replace(tzinfo=None) if t.tzinfo else t


def _fit_or_reuse(
    wh: Warehouse,
    name: str,
    as_of: datetime,
    s: ModelSettings,
    report: ScoreReport,
    fit: Any,
    rows: int,
    record: bool = True,
) -> Any:
    saved = latest_model(wh, name)
    if (
        saved is not None
        and s.refit_after_days > 0
        and saved.window_end <= as_of
        and as_of - saved.window_end < timedelta(days=s.refit_after_days)
    ):
        report.fitted[name] = saved.version
        report.reused.append(name)
        return model_from_dict(saved.params)
    model = fit()
    d = model.to_dict()
    if not record:  # snapshots of the past: the fit is used once and not kept
        return model
    report.fitted[name] = save_model(
        wh,
        name,
        d,
        window_end=as_of,
        rows=rows,
        metrics={"log_likelihood": d.get("log_likelihood")},
    )
    return model


def btyd_scores(
    wh: Warehouse, as_of: datetime, s: ModelSettings, report: ScoreReport, record: bool = True
) -> pd.DataFrame:
    """customer_id, p_alive, expected_purchases, expected_order_value, clv for every buyer."""
    # rounded, and in an order fixed by the values themselves: the fits' floating-point sums
    # (and so whether a marginal fit converges) must depend neither on how the engine happened
    # to schedule the aggregation (its sums can differ in their last bits from run to run) nor
    # on the customers' ids
    cols = ["frequency", "recency", "T", "monetary_value"]
    summ = wh.execute(
        rfm_summary(transactions(wh, as_of), calibration_end=_naive(as_of), unit_days=1.0)
    )
    summ[cols[1:]] = summ[cols[1:]].round(9)
    summ = summ.sort_values([*cols, "customer_id"], ignore_index=True)
    out = pd.DataFrame({"customer_id": summ["customer_id"]})
    for c in SCORE_COLUMNS[:4]:
        out[c] = np.nan
    x, tx, age, m = (
        summ[c].to_numpy(float) for c in ("frequency", "recency", "T", "monetary_value")
    )
    kind = s.transaction_model
    if kind not in TRANSACTION_MODELS:
        raise ModelInputError(
            f"[models] transaction_model: {kind!r} is not one of {sorted(TRANSACTION_MODELS)}"
        )
    cls = TRANSACTION_MODELS[kind]
    try:
        bg = _fit_or_reuse(
            wh,
            kind,
            as_of,
            s,
            report,
            lambda: cls().fit(x, tx, age),
            len(x),
            record,
        )
    except (ModelInputError, ValueError, ArithmeticError) as exc:
        report.notes.append(f"{kind} not fitted ({exc}); P(alive) and CLV left empty")
        return out
    out["p_alive"] = bg.conditional_probability_alive(x, tx, age)
    out["expected_purchases"] = bg.conditional_expected_number_of_purchases_up_to_time(
        float(s.horizon_days), x, tx, age
    )
    rep = (x > 0) & (m > 0)
    try:
        gg = _fit_or_reuse(
            wh,
            "gamma_gamma",
            as_of,
            s,
            report,
            lambda: GammaGamma().fit(x[rep], m[rep]),
            int(rep.sum()),
            record,
        )
    except (ModelInputError, ValueError, ArithmeticError) as exc:
        report.notes.append(f"Gamma-Gamma not fitted ({exc}); order value and CLV left empty")
        return out
    m_safe = np.where(rep, m, 0.0)
    x_safe = np.where(rep, x, 0.0)  # a repeat with zero spend counts as no evidence of spend
    out["expected_order_value"] = gg.conditional_expected_average_profit(x_safe, m_safe)
    monthly = (1 + s.annual_discount_rate) ** (1 / 12) - 1
    out["clv"] = customer_lifetime_value(
        bg,
        gg,
        x,
        tx,
        age,
        m_safe,
        months=s.clv_months,
        monthly_discount_rate=monthly,
        unit_days=1.0,
    )
    return out


def email_click_scores(wh: Warehouse, as_of: datetime) -> pd.DataFrame:
    """customer_id, p_email_click: clicks per delivered e-mail, shrunk to the population rate.

    The prior is a beta distribution fitted to everyone's rates by the method of moments, so
    a person with 2 clicks out of 3 e-mails is not taken for a 67% clicker.
    """
    e = wh.table("events")
    cutoff = ibis.literal(as_of, type=TS)
    e = e.filter((e.timestamp <= cutoff) & e.event.isin(["Email Delivered", "Email Link Clicked"]))
    e = of(e, wh.table("record_customers"), "events", "message_id")
    per = wh.execute(
        e.group_by("customer_id").aggregate(
            sent=(e.event == "Email Delivered").cast("int64").sum(),
            clicks=(e.event == "Email Link Clicked").cast("int64").sum(),
        )
    )
    per = per[per.sent > 0]
    if per.empty:
        return pd.DataFrame({"customer_id": pd.Series([], dtype=str), "p_email_click": []})
    n, k = (
        per.sent.to_numpy(float),
        np.minimum(per.clicks.to_numpy(float), per.sent.to_numpy(float)),
    )
    mean = float(k.sum() / n.sum())
    rates = k / n
    var = float(np.average((rates - mean) ** 2, weights=n))
    # method of moments for the beta prior's strength; bounded so that a handful of people
    # cannot make it vanish or explode
    binom = mean * (1 - mean) * float(np.mean(1 / n))
    excess = max(var - binom, 1e-6)
    strength = float(np.clip(mean * (1 - mean) / excess - 1, 2.0, 1000.0))
    a, b = mean * strength, (1 - mean) * strength
    return pd.DataFrame({"customer_id": per.customer_id, "p_email_click": (k + a) / (n + a + b)})


def customer_scores(
    wh: Warehouse, as_of: datetime, s: ModelSettings, report: ScoreReport, record: bool = True
) -> pd.DataFrame:
    """Every score that does not need the profiles, one row per person who has any.

    ``record=False`` (snapshots of the past) fits afresh and keeps no model in ``models``.
    """
    btyd = btyd_scores(wh, as_of, s, report, record)
    clicks = email_click_scores(wh, as_of)
    out = btyd.merge(clicks, on="customer_id", how="outer")
    for c in SCORE_COLUMNS:
        out[c] = out[c].astype("float64")
    return out


def churn_labels(wh: Warehouse, start: datetime, end: datetime) -> ibis.Table:
    """customer_id of every person who ordered in (start, end]."""
    o = wh.table("orders")
    o = o.filter(
        (o.status != "cancelled")
        & (o.ts > ibis.literal(start, type=TS))
        & (o.ts <= ibis.literal(end, type=TS))
    )
    return (
        of(o, wh.table("record_customers"), "orders", "order_id").select("customer_id").distinct()
    )


def churn_scores(
    wh: Warehouse,
    as_of: datetime,
    s: ModelSettings,
    report: ScoreReport,
    train_profiles: pd.DataFrame,
    profiles: pd.DataFrame,
) -> pd.DataFrame:
    """customer_id, churn_probability for buyers: fitted on ``train_profiles`` (as of
    ``as_of - horizon``) labelled by whether each buyer ordered again before ``as_of``."""
    t0 = as_of - timedelta(days=s.horizon_days)
    buyers = train_profiles[train_profiles.orders > 0]
    came_back = set(wh.execute(churn_labels(wh, t0, as_of)).customer_id)
    y = ~buyers.customer_id.isin(came_back).to_numpy()
    target = profiles[profiles.orders > 0]
    out = pd.DataFrame({"customer_id": target.customer_id})
    try:
        model = ChurnModel().fit(buyers, y)
    except ModelInputError as exc:
        report.notes.append(f"churn model not fitted ({exc}); churn = 1 - P(order) from BG/NBD")
        if "expected_purchases" in target.columns:
            out["churn_probability"] = np.exp(-target.expected_purchases.to_numpy(float))
        else:
            out["churn_probability"] = np.nan
        return out
    report.fitted["churn"] = save_model(
        wh,
        "churn",
        {"features": model.features_, "base_rate": model.base_rate_, "params": model.get_params()},
        window_start=t0,
        window_end=as_of,
        rows=len(buyers),
        metrics={"train_churn_rate": model.base_rate_},
    )
    out["churn_probability"] = model.predict_proba(target)
    return out


def tastes(wh: Warehouse, when: datetime, s: ModelSettings) -> int:
    """``category_affinity`` as of ``when`` and new ``taste_shift`` transitions at ``when``.

    Returns the number of shifts recorded. A shift already in ``transitions`` (same new top
    category) is not recorded again, so re-running a build or a snapshot adds nothing.
    """
    aff = category_affinity(wh, when, half_life_days=s.taste_half_life_days)
    shifts = wh.materialize(
        "_segone_taste_shifts",
        taste_transitions(TasteShiftDetector().run(wh, when, previous=wh.table("transitions"))),
    )
    n = int(wh.execute(shifts.count()))
    with wh.transaction():
        wh.replace("category_affinity", aff)
        if n:
            wh.insert("transitions", shifts)
    wh.drop_staging("_segone_taste_shifts")
    return n

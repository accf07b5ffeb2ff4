"""What `segone build` predicts for every person: scores, churn, and where each model came from.

* ``customer_scores``: BG/NBD P(alive) and expected purchases, Gamma-Gamma order value, CLV
  (all fitted on one row per buyer: frequency, recency, age in days), and each person's e-mail
  click probability (their own rate shrunk towards everyone's, beta-binomial).
* ``tastes``: ``taste_shift`` transitions when recent purchases leave the long-term profile
  (``segone.models.taste``; the category affinity is the preference model's).
* ``churn_scores``: gradient boosting trained on the profiles as of ``as_of - horizon`` labelled
  with what happened since, applied to the profiles as of ``as_of``.

Every fit is recorded in ``models`` with its version and the data window it saw; with
``refit_after_days > 0`` a build reuses a fit whose data ends less than that many days earlier.
A model that cannot be fitted or scored on the data (too few buyers, no repeat purchases, a fit
that does not converge) is skipped: its scores stay null, the report names the model and the
reason (``ScoreReport.skipped``), the rest of the build goes on, and it adds no version to
``models``. Fits are only written to ``models`` once the whole build has succeeded
(``ScoreReport.save``), so a build that fails leaves no versions behind either.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import ibis
import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from segone.exceptions import ModelInputError
from segone.exprs import of
from segone.models.btyd import (
    BetaGeo,
    GammaGamma,
    ParetoNBD,
    discounted_expected_purchases,
    model_from_dict,
)
from segone.models.churn import ChurnModel
from segone.models.registry import latest_model, save_model
from segone.models.settings import ModelSettings
from segone.models.summary import rfm_summary
from segone.models.taste import TasteShiftDetector, taste_transitions
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


@dataclass(frozen=True)
class Fit:
    """One model fit to record in ``models`` (or, with ``version`` set, a saved fit reused)."""

    name: str
    params: dict[str, Any]
    window_end: datetime
    window_start: datetime | None = None
    rows: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    version: int | None = None


@dataclass
class ScoreReport:
    """What was fitted or reused, which models were skipped and why, and other notes.

    New fits wait in ``pending`` until ``save``: a build records its fits only once it has
    used them all, so a model that fails, or a build that fails, adds no version.
    """

    fitted: dict[str, int] = field(default_factory=dict)  # model name -> version used
    reused: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # model name -> reason
    pending: list[Fit] = field(default_factory=list, repr=False)

    def use(self, fit: Fit | None) -> None:
        """Count a fit as used: a reused one by its version, a new one to be saved."""
        if fit is None:  # snapshots of the past keep no fit
            return
        if fit.version is not None:
            self.fitted[fit.name] = fit.version
            self.reused.append(fit.name)
        else:
            self.pending.append(fit)

    def skip(self, model: str, problem: BaseException | str, consequence: str) -> None:
        """Record that ``model`` was not used, why, and what the build does without it."""
        reason = _reason(problem)
        self.skipped[model] = reason
        self.notes.append(f"warning: {model} skipped ({reason}); {consequence}")

    def save(self, wh: Warehouse) -> None:
        """Append the pending fits to ``models`` (one new version each)."""
        for f in self.pending:
            self.fitted[f.name] = save_model(
                wh,
                f.name,
                f.params,
                window_end=f.window_end,
                window_start=f.window_start,
                rows=f.rows,
                metrics=f.metrics,
            )
        self.pending.clear()

    def summary(self) -> str:
        used = ", ".join(
            f"{k} v{v}{' (reused)' if k in self.reused else ''}" for k, v in self.fitted.items()
        )
        waiting = ", ".join(f.name for f in self.pending)
        return "; ".join(
            [
                s
                for s in [used and f"models: {used}", waiting and f"fitted: {waiting}", *self.notes]
                if s
            ]
        )


def _reason(problem: BaseException | str) -> str:
    """A model failure in words: our own input errors as they are, anything else with its
    type (a library's ``ValueError`` alone rarely says which step failed)."""
    if isinstance(problem, str):
        return problem
    text = str(problem).strip() or "no message"
    return text if isinstance(problem, ModelInputError) else f"{type(problem).__name__}: {text}"


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
    fit: Any,
    rows: int,
    record: bool = True,
) -> tuple[Any, Fit | None]:
    """The model and its ``Fit`` (for ``ScoreReport.use`` once the model has been used)."""
    saved = latest_model(wh, name)
    if (
        saved is not None
        and s.refit_after_days > 0
        and saved.window_end <= as_of
        and as_of - saved.window_end < timedelta(days=s.refit_after_days)
    ):
        return model_from_dict(saved.params), Fit(
            name, saved.params, saved.window_end, version=saved.version
        )
    model = fit()
    if not record:  # snapshots of the past: the fit is used once and not kept
        return model, None
    d = model.to_dict()
    return model, Fit(
        name, d, as_of, rows=rows, metrics={"log_likelihood": d.get("log_likelihood")}
    )


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
        bg, used = _fit_or_reuse(wh, kind, as_of, s, lambda: cls().fit(x, tx, age), len(x), record)
        p_alive = bg.conditional_probability_alive(x, tx, age)
        expected = bg.conditional_expected_number_of_purchases_up_to_time(
            float(s.horizon_days), x, tx, age
        )
        monthly = (1 + s.annual_discount_rate) ** (1 / 12) - 1
        purchases = discounted_expected_purchases(
            bg, x, tx, age, months=s.clv_months, monthly_discount_rate=monthly, unit_days=1.0
        )
    except Exception as exc:  # a model must never fail the build
        report.skip(kind, exc, "P(alive), expected purchases and CLV left empty")
        return out
    report.use(used)
    out["p_alive"] = p_alive
    out["expected_purchases"] = expected
    # Gamma-Gamma is fitted, as in lifetimes, on repeat buyers whose mean repeat spend is
    # positive: a repeat bought for nothing (a free item, a missing amount) says nothing about
    # the spend distribution and would make the likelihood undefined. Everyone else is priced
    # at the population mean spend the fit implies.
    rep = (x > 0) & np.isfinite(m) & (m > 0)
    try:
        gg, used = _fit_or_reuse(
            wh,
            "gamma_gamma",
            as_of,
            s,
            lambda: GammaGamma().fit(x[rep], m[rep]),
            int(rep.sum()),
            record,
        )
        q = gg.params_["q"]
        if not q > 1:
            raise ModelInputError(
                f"the fit gives q = {q:.3g} <= 1, so the population mean spend is infinite"
            )
        spend = gg.conditional_expected_average_profit(np.where(rep, x, 0.0), np.where(rep, m, 0.0))
    except Exception as exc:  # a model must never fail the build
        report.skip("gamma_gamma", exc, "expected order value and CLV left empty")
        return out
    report.use(used)
    out["expected_order_value"] = spend
    out["clv"] = spend * purchases
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
    try:
        clicks = email_click_scores(wh, as_of)
    except Exception as exc:  # a model must never fail the build
        report.skip("email_click", exc, "e-mail click probability left empty")
        clicks = pd.DataFrame({"customer_id": pd.Series([], dtype=str), "p_email_click": []})
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


def churn_baseline(frame: pd.DataFrame) -> npt.NDArray[np.float64]:
    """The buy-till-you-die churn probability: P(no purchase in the horizon) taken as
    exp(-expected purchases in it), NaN where the transaction model gave none."""
    if "expected_purchases" not in frame.columns:
        return np.full(len(frame), np.nan)
    return np.asarray(
        np.exp(-pd.to_numeric(frame.expected_purchases, errors="coerce").to_numpy(float)),
        dtype=np.float64,
    )


def labelled_buyers(wh: Warehouse, profiles: pd.DataFrame, t: datetime, days: int) -> pd.DataFrame:
    """The buyers among ``profiles`` (as of ``t``) with ``churned``: no order in
    ``(t, t + days]``; sorted by their values, so that the held-out half of ``churn_scores``
    is the same whatever the row order or the project's secret."""
    buyers = profiles[profiles.orders > 0]
    # in an order fixed by the values (not by the ids, which are salted with the project's
    # secret); the last bits of the warehouse's float sums must not matter either
    keys = [c for c in buyers.columns if c != "customer_id"]
    rounded = buyers[keys].apply(lambda c: c.round(9) if c.dtype.kind == "f" else c)
    order = rounded.assign(_id=buyers.customer_id).sort_values([*keys, "_id"]).index
    buyers = buyers.loc[order].reset_index(drop=True)
    came_back = set(wh.execute(churn_labels(wh, t, t + timedelta(days=days))).customer_id)
    return buyers.assign(churned=~buyers.customer_id.isin(came_back))


def _scores(y: npt.NDArray[np.bool_], p: npt.NDArray[np.float64]) -> dict[str, float] | None:
    """AUC and log loss of ``p`` for ``y`` (None when they cannot be computed)."""
    from sklearn.metrics import log_loss, roc_auc_score

    ok = np.isfinite(p)
    if not ok.all() or len(set(y.tolist())) < 2:
        return None
    q = np.clip(p, 1e-6, 1 - 1e-6)
    return {
        "auc": float(roc_auc_score(y, q)),
        "log_loss": float(log_loss(y, q, labels=[False, True])),
    }


def churn_scores(
    wh: Warehouse,
    as_of: datetime,
    s: ModelSettings,
    report: ScoreReport,
    train: pd.DataFrame,
    profiles: pd.DataFrame,
    earlier: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """customer_id, churn_probability (no order in the next ``horizon_days``) for the buyers in
    ``profiles``.

    ``train`` is ``labelled_buyers`` as of ``as_of - horizon``; ``earlier`` the same one
    horizon before that, when the history reaches back that far. Gradient boosting is checked
    against its buy-till-you-die baseline (``churn_baseline``) on a time split: trained on
    ``earlier``, both are scored on ``train``'s outcomes. The one with the lower log loss is
    kept (the model record says which, with both figures); the gradient boosting used is then
    refitted on ``train``. Without ``earlier`` the split is by buyer (every other one held out).
    """
    h = s.horizon_days
    baseline = f"exp(-expected purchases in {h} days) from {s.transaction_model}"
    target = profiles[profiles.orders > 0].sort_values("customer_id", ignore_index=True)
    out = pd.DataFrame({"customer_id": target.customer_id, "churn_probability": np.nan})
    base_now = churn_baseline(target)
    t0 = as_of - timedelta(days=h)
    y = train.churned.to_numpy(bool)
    try:
        model = ChurnModel().fit(train, y)
    except ModelInputError as exc:
        report.skip("churn", exc, f"churn_probability = {baseline} instead")
        out["churn_probability"] = base_now
        return out
    splits = [
        (
            train.iloc[0::2],
            train.iloc[1::2],
            f"every other buyer held out (no time split over {h} days: too little history)",
        )
    ]
    if earlier is not None:
        splits.insert(
            0,
            (
                earlier,
                train,
                f"time split: trained on the buyers of {t0 - timedelta(days=h):%Y-%m-%d}, "
                f"validated on those of {t0:%Y-%m-%d}",
            ),
        )
    gb = bt = None
    split = ""
    for fit_on, check_on, how in splits:
        check_y = check_on.churned.to_numpy(bool)
        try:
            trial = ChurnModel().fit(fit_on, fit_on.churned.to_numpy(bool))
        except ModelInputError:
            continue
        gb = _scores(check_y, trial.predict_proba(check_on))
        bt = _scores(check_y, churn_baseline(check_on))
        if gb is not None:
            split = how
            break
    if gb is None:
        chosen, why = "gradient_boosting", "not validated: too few buyers or outcomes to hold out"
    elif bt is None:
        chosen, why = "gradient_boosting", f"no {s.transaction_model} baseline to compare with"
    else:
        chosen = "gradient_boosting" if gb["log_loss"] <= bt["log_loss"] else "btyd_baseline"
        why = (
            f"log loss {gb['log_loss']:.4f} (AUC {gb['auc']:.3f}) against the baseline's "
            f"{bt['log_loss']:.4f} (AUC {bt['auc']:.3f}), {split}"
        )
    used = "gradient boosting" if chosen == "gradient_boosting" else baseline
    report.notes.append(f"churn over {h} days: {used} kept ({why})")
    report.use(
        Fit(
            "churn",
            {
                "chosen": chosen,
                "baseline": baseline,
                "horizon_days": h,
                "features": model.features_,
                "base_rate": model.base_rate_,
                "params": model.get_params(),
            },
            window_start=t0,
            window_end=as_of,
            rows=len(train),
            metrics={
                "train_churn_rate": model.base_rate_,
                "validation": split,
                "gradient_boosting": gb,
                "baseline": bt,
            },
        )
    )
    out["churn_probability"] = (
        model.predict_proba(target) if chosen == "gradient_boosting" else base_now
    )
    return out


def tastes(wh: Warehouse, when: datetime) -> int:
    """New ``taste_shift`` transitions at ``when`` (the category affinity itself is the
    preference model's, written by the build: ``segone.models.affinity``).

    Returns the number of shifts recorded. A shift already in ``transitions`` (same new top
    category) is not recorded again, so re-running a build or a snapshot adds nothing.
    """
    shifts = wh.materialize(
        "_segone_taste_shifts",
        taste_transitions(TasteShiftDetector().run(wh, when, previous=wh.table("transitions"))),
    )
    n = int(wh.execute(shifts.count()))
    if n:
        with wh.transaction():
            wh.insert("transitions", shifts)
    wh.drop_staging("_segone_taste_shifts")
    return n

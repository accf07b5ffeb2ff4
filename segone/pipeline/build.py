"""``segone build``: identities, features, models, profiles — and, around them, the online store.

The top of the batch path (resolve → features → models → publish). ``build`` rebuilds the
warehouse's derived tables as of now or any past date; ``build_project`` is what ``segone
build`` runs: the server's new data in, ``build``, the results out to the online store
(``segone.pipeline.publish``). Everything below this module only computes one part and knows
nothing of the order the parts run in.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, Protocol

import ibis
import ibis.expr.types as ir
import pandas as pd

from segone.config import Settings
from segone.identity import IdentityResult, IdentitySettings, resolve
from segone.models.churn import MIN_BUYERS, PROFILE_COLUMNS
from segone.models.nextproducts import NextProducts, NextProductsError, purchase_lines
from segone.models.pipeline import (
    Fit,
    ScoreReport,
    churn_baseline,
    churn_scores,
    customer_scores,
    labelled_buyers,
    stage_frame,
    tastes,
    transactions,
)
from segone.models.preference import build_preferences
from segone.models.settings import ModelSettings
from segone.pipeline.publish import SyncResult, open_online, publish, sync_before_build
from segone.profiles.features import affinity_map
from segone.profiles.sentiment import score_interactions
from segone.profiles.view import customer_features
from segone.schema import TS
from segone.segments.lifecycle import LifecycleSettings, lifecycle
from segone.store.base import Warehouse

#: Model outputs every profile carries (null where no model applies or none was fitted).
PROFILE_SCORES = (
    "p_alive",
    "expected_purchases",
    "expected_order_value",
    "clv",
    "churn_probability",
    "p_email_click",
)


@dataclass
class BuildResult:
    as_of: datetime
    identity: IdentityResult
    profiles: int
    models: ScoreReport | None = None

    def summary(self) -> str:
        text = (
            f"as of {self.as_of:%Y-%m-%d %H:%M} UTC: {self.identity.summary()}; "
            f"{self.profiles:,} profiles"
        )
        more = self.models.summary() if self.models else ""
        return f"{text}; {more}" if more else text


def profiles_expr(
    wh: Warehouse,
    as_of: ir.TimestampValue,
    country_code: str = "1",
    stages: LifecycleSettings | None = None,
    scores: ibis.Table | None = None,
    affinity: ibis.Table | None = None,
) -> ibis.Table:
    """The single customer view: one row per customer, every feature computed up to ``as_of``
    (``segone.profiles.view``), the model scores, the category affinity and the lifecycle stage.

    ``scores`` (customer_id and any of the model columns, as ``segone.models`` computes them)
    are joined in before the lifecycle stage, which then uses P(alive) where it is known.
    ``affinity``: rows of the ``category_affinity`` table (the preference model's, as of
    ``as_of``), read into ``category_affinity`` and ``top_category`` (null without).
    """
    p = customer_features(wh, as_of, country_code)
    if affinity is not None:
        p = p.left_join(affinity_map(affinity), "customer_id").drop("customer_id_right")
    else:
        p = p.mutate(
            category_affinity=ibis.null("map<string, float64>"),
            top_category=ibis.null("string"),
        )
    if scores is not None:
        have = [c for c in PROFILE_SCORES if c in scores.columns]
        p = p.left_join(scores.select("customer_id", *have), "customer_id").drop(
            "customer_id_right"
        )
    p = p.mutate(**{c: ibis.null("float64") for c in PROFILE_SCORES if c not in p.columns})
    p = lifecycle(p, stages or LifecycleSettings(), as_of)
    return p.mutate(as_of=as_of)


# what ``build`` reports through ``progress``, in order (model stages only when [models] enabled)
BUILD_STAGES = (
    "identities",
    "sentiment",
    "transaction models",
    "preferences",
    "profiles",
    "predictions",
    "churn",
    "recommendations",
    "tastes",
)


def build(
    wh: Warehouse,
    *,
    as_of: datetime | None = None,
    identity: IdentitySettings | None = None,
    stages: LifecycleSettings | None = None,
    models: ModelSettings | None = None,
    progress: Callable[[str, str], None] | None = None,
) -> BuildResult:
    """Resolve identities, fit and score the models, and rebuild ``profiles``, ``scores`` (and
    the model outputs) from the raw tables up to ``as_of``.

    ``progress(stage, detail)`` is called as each stage (``BUILD_STAGES``) starts, with what the
    previous one produced as ``detail`` (a build of a large store takes minutes: say where)."""
    say = progress or (lambda _stage, _detail: None)
    when = as_of or datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    say("identities", "")
    ident = resolve(wh, identity, as_of=as_of)
    say("sentiment", f"{ident.customers:,} customers from {ident.records:,} records")
    score_interactions(wh)
    ms = models or ModelSettings()
    country = (identity or IdentitySettings()).default_country_code
    report = ScoreReport()
    scores = affinity = None
    if ms.enabled:
        say("transaction models", "")
        scores = stage_frame(wh, "_segone_scores", customer_scores(wh, when, ms, report))
        say("preferences", "")
        affinity = preferences(wh, when, report)
    elif "category_affinity" in wh.tables():
        # no model, no affinity: an older build's rows would describe another date
        with wh.transaction():
            wh.replace("category_affinity", wh.table("category_affinity").limit(0))
    say("profiles", "")
    cutoff = ibis.literal(when, type=TS)
    with wh.transaction():
        wh.replace("profiles", profiles_expr(wh, cutoff, country, stages, scores, affinity))
    if ms.enabled:
        assert scores is not None
        say("predictions", f"{wh.count('profiles'):,} profiles")
        predictions(wh, when, ms, report, scores, country, stages, say)
        wh.drop_staging("_segone_scores")
    # only now, with every output written: a build that fails on the way keeps no fit
    report.save(wh)
    return BuildResult(when, ident, wh.count("profiles"), report)


def predictions(
    wh: Warehouse,
    when: datetime,
    ms: ModelSettings,
    report: ScoreReport,
    scores: ibis.Table,
    country: str,
    stages: LifecycleSettings | None,
    say: Callable[[str, str], None] | None = None,
) -> None:
    """Churn (needs the profiles), then ``scores`` and the profiles' churn column."""
    say = say or (lambda _stage, _detail: None)
    cols = PROFILE_COLUMNS
    prof = wh.table("profiles")
    now = wh.execute(prof.select(*[c for c in cols if c in prof.columns]))
    none = pd.DataFrame({"customer_id": pd.Series([], dtype=str), "churn_probability": []})
    churn = none
    if ms.churn and (now.orders > 0).any():
        say("churn", "")
        try:
            churn = _churn(wh, when, ms, report, now, country, stages)
        except Exception as exc:  # a model must never fail the build
            report.skip("churn", exc, "churn probability left empty")
            churn = none
        finally:
            wh.drop_staging("_segone_scores_t0")
    ch = stage_frame(wh, "_segone_churn", churn.astype({"churn_probability": "float64"}))
    out = scores.left_join(ch, "customer_id").drop("customer_id_right")
    out = out.mutate(as_of=ibis.literal(when, type=TS))
    with wh.transaction():
        wh.replace("scores", out)
        p = wh.materialize("_segone_profiles", wh.table("profiles"))
        j = p.left_join(ch, "customer_id")
        wh.replace(
            "profiles",
            j.select(
                *[
                    j.churn_probability_right.name(c) if c == "churn_probability" else p[c]
                    for c in p.columns
                ]
            ),
        )
    wh.drop_staging("_segone_profiles")
    wh.drop_staging("_segone_churn")
    if ms.recommendations > 0:
        say("recommendations", "")
        try:
            recommend(wh, when, ms, report)
        except Exception as exc:  # a model must never fail the build
            report.skip("next_products", exc, "recommendations left empty")
            wh.replace("recommendations", wh.table("recommendations").limit(0))
        finally:
            wh.drop_staging("_segone_recs")
    say("tastes", "")
    try:
        shifts = tastes(wh, when)
    except Exception as exc:  # a model must never fail the build
        report.skip("tastes", exc, "taste shifts not updated")
        shifts = 0
    finally:
        wh.drop_staging("_segone_taste_shifts")
    if shifts:
        report.notes.append(f"{shifts:,} taste shifts")


def _churn(
    wh: Warehouse,
    when: datetime,
    ms: ModelSettings,
    report: ScoreReport,
    now: pd.DataFrame,
    country: str,
    stages: LifecycleSettings | None,
) -> pd.DataFrame:
    """Churn scores of the buyers in ``now``: trained on the profiles of one horizon back,
    checked on a time split against the profiles of two horizons back when there are enough."""
    cols = PROFILE_COLUMNS
    h = ms.horizon_days

    def snapshot(t: datetime) -> pd.DataFrame | None:
        """The buyers as of ``t`` labelled by ``(t, t + h]``; None when too few to train on."""
        if int(wh.execute(transactions(wh, t).customer_id.nunique())) < MIN_BUYERS:
            return None
        past_scores = stage_frame(
            wh, "_segone_scores_t0", customer_scores(wh, t, ms, ScoreReport(), record=False)
        )
        past_prof = profiles_expr(wh, ibis.literal(t, type=TS), country, stages, past_scores)
        frame = wh.execute(past_prof.select(*[c for c in cols if c in past_prof.columns]))
        wh.drop_staging("_segone_scores_t0")
        return labelled_buyers(wh, frame, t, h)

    t0 = when - timedelta(days=h)
    train = snapshot(t0)
    if train is None:
        n = int(wh.execute(transactions(wh, t0).customer_id.nunique()))
        report.skip(
            "churn",
            f"{n} buyers up to {t0:%Y-%m-%d}, one {h}-day horizon back, and training needs "
            f"{MIN_BUYERS}: the history is too short for this horizon",
            f"churn_probability = exp(-expected purchases in {h} days) from "
            f"{ms.transaction_model} instead",
        )
        target = now[now.orders > 0]
        return pd.DataFrame(
            {"customer_id": target.customer_id, "churn_probability": churn_baseline(target)}
        )
    earlier = snapshot(t0 - timedelta(days=h))
    return churn_scores(wh, when, ms, report, train, now, earlier)


def preferences(wh: Warehouse, when: datetime, report: ScoreReport) -> ibis.Table | None:
    """Fit the preference model as of ``when`` and write its category affinity to
    ``category_affinity`` (emptied when there is no fit: an older one would be stale).
    Returns that table, or None when there is no affinity."""
    rows = None
    try:
        fit, note, rows = build_preferences(wh, when)
    except Exception as exc:  # a model must never fail the build
        report.skip("preferences", exc, "decisions rank without item preferences, no affinity")
    else:
        if fit is not None:
            report.use(fit)
        else:
            report.notes.append(note)
    if rows is None:
        with wh.transaction():
            wh.replace("category_affinity", wh.table("category_affinity").limit(0))
        return None
    staged = wh.stage("_segone_affinity", rows, append=False)
    with wh.transaction():
        wh.replace("category_affinity", staged)
    wh.drop_staging("_segone_affinity")
    return wh.table("category_affinity")


def recommend(wh: Warehouse, when: datetime, ms: ModelSettings, report: ScoreReport) -> None:
    """``recommendations``: next products for every profile (segment fallback: top category)."""
    model = NextProducts(segment_column="top_category", random_state=0)
    prof = wh.table("profiles")
    try:
        model.fit(
            wh,
            purchase_lines(wh, as_of=when),
            as_of=when,
            segments=prof.select("customer_id", "top_category"),
        )
    except NextProductsError as exc:
        report.notes.append(f"no recommendations ({exc})")
        wh.replace("recommendations", wh.table("recommendations").limit(0))
        return
    recs = model.recommend(n=ms.recommendations)
    t = wh.stage("_segone_recs", recs, append=False)
    with wh.transaction():
        wh.replace("recommendations", t.mutate(as_of=ibis.literal(when, type=TS)))
    wh.drop_staging("_segone_recs")
    report.use(
        Fit(
            "next_products",
            {"params": {k: v for k, v in model.get_params().items() if k != "segment_column"}},
            window_end=when,
            rows=len(model.customers_),
            metrics={"items": len(model.items_), "rules": model.rules_.num_rows},
        )
    )


class ProjectBuild(NamedTuple):
    """What ``segone build`` did: the warehouse build, and the online store's side of it
    (None when there was no online store to sync or the build was as of a past date)."""

    build: BuildResult
    online: SyncResult | None


class BuildsProjects(Protocol):
    """What ``build_project`` needs of a project (``segone.project.Project`` has it)."""

    @property
    def settings(self) -> Settings: ...

    def warehouse(self, *, read_only: bool = False) -> Warehouse: ...


def build_project(
    project: BuildsProjects,
    *,
    as_of: datetime | None = None,
    online: bool = True,
    create_online: bool = False,
    status: Callable[[str], AbstractContextManager[Any]] | None = None,
    progress: Callable[[str, str], None] | None = None,
) -> ProjectBuild:
    """``segone build``: pick up the server's data, build, publish. An as-of build describes
    the past, so it neither takes in nor publishes live data."""
    step = status or (lambda _msg: nullcontext())
    settings = project.settings
    store = open_online(settings, create=create_online) if online and as_of is None else None
    try:
        with project.warehouse() as wh:
            before = None
            if store is not None:
                with step("picking up the server's events"):
                    before = sync_before_build(wh, store, settings)
            with step("resolving identities and building profiles"):
                result = build(
                    wh,
                    as_of=as_of,
                    identity=settings.identity,
                    stages=settings.lifecycle,
                    models=settings.models,
                    progress=progress,
                )
            if store is None or before is None:
                return ProjectBuild(result, None)
            with step("publishing to the online store"):
                pub = publish(wh, store, settings)
            pub.erased, pub.events, pub.orders, pub.rejected = (
                before.erased,
                before.events,
                before.orders,
                before.rejected,
            )
            return ProjectBuild(result, pub)
    finally:
        if store is not None:
            store.close()

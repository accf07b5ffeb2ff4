"""Segment history over time: a snapshot as of one date, and a backfill over a date range.

A snapshot needs the profiles as of its date (with the scores a build as of that date would
have: P(alive) moves lifecycle stages), then records who entered and left each segment
(``segone.segments.history.record``), then detects taste shifts (``segone.models``). Those are
three layers, so the order they run in lives here, above them all.

Backfills resolve identity once (with everything known now) and build each snapshot's profiles
from the records up to its date: a link learnt later is applied to earlier records. This keeps
a person's id stable across the history, at the price of that small look-ahead.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import ibis

from segone.exceptions import SegoneError
from segone.models.pipeline import ScoreReport, customer_scores, stage_frame, tastes
from segone.models.settings import ModelSettings
from segone.pipeline.build import profiles_expr
from segone.schema import TS
from segone.segments.history import SnapshotResult, check_forward, record
from segone.segments.lifecycle import LifecycleSettings
from segone.segments.rules import Catalogue
from segone.store.base import Warehouse


def record_snapshot(
    wh: Warehouse,
    cat: Catalogue,
    at: datetime,
    stages: LifecycleSettings | None = None,
    *,
    rebuild_profiles: bool = True,
    models: ModelSettings | None = None,
) -> SnapshotResult:
    """Evaluate every segment and lifecycle stage as of ``at`` and record what changed."""
    check_forward(wh, at)
    if rebuild_profiles:
        # the same scores a build as of ``at`` would have (P(alive) moves lifecycle stages)
        ms = models or ModelSettings()
        scores = None
        if ms.enabled:
            sc = customer_scores(wh, at, ms, ScoreReport(), record=False)
            scores = stage_frame(wh, "_segone_snap_scores", sc)
        # the snapshot evaluates segments on profiles as of ``at``; the build's own profiles
        # (with the scores only a build computes, such as churn) are put back afterwards
        wh.materialize("_segone_built_profiles", wh.table("profiles"))
        when = ibis.literal(at, type=TS)
        with wh.transaction():
            wh.replace("profiles", profiles_expr(wh, when, stages=stages, scores=scores))
    result = record(wh, cat, at)
    if models is None or models.enabled:
        result.moves += tastes(wh, at)
    if rebuild_profiles:
        with wh.transaction():
            wh.replace("profiles", wh.table("_segone_built_profiles"))
    for n in ("_segone_snap_scores", "_segone_built_profiles"):
        wh.drop_staging(n)
    return result


def backfill(
    wh: Warehouse,
    cat: Catalogue,
    start: datetime,
    end: datetime,
    every_days: int,
    stages: LifecycleSettings | None = None,
    progress: Callable[[int, int, datetime], None] | None = None,
    models: ModelSettings | None = None,
) -> list[SnapshotResult]:
    """Snapshots at ``start``, ``start + every_days``, … up to ``end``."""
    if every_days <= 0 or end < start:
        raise SegoneError("backfill needs --every >= 1 and --to on or after --from")
    dates = []
    t = start
    while t <= end:
        dates.append(t)
        t += timedelta(days=every_days)
    out = []
    for i, d in enumerate(dates):
        if progress:
            progress(i, len(dates), d)
        out.append(record_snapshot(wh, cat, d, stages, models=models))
    return out

"""Segments that follow people: membership history and transitions from as-of snapshots.

Each snapshot (``record_snapshot``) evaluates every segment, and every person's lifecycle stage
(as segment ``lifecycle:<stage>``), as of a date, and compares with the memberships still open:
people who entered get a row with ``entered_at``; people who left get ``exited_at``; every move
is a row of ``transitions`` (lifecycle moves from one stage to another, segment entries and
exits, and taste shifts: a person's recent purchases leaving their long-term favourite
category). ``backfill`` records snapshots over a date range, oldest first.

Backfills resolve identity once (with everything known now) and build each snapshot's profiles
from the records up to its date: a link learnt later is applied to earlier records. This keeps
a person's id stable across the history, at the price of that small look-ahead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import ibis
import pyarrow as pa

from segone.exceptions import SegoneError
from segone.exprs import lit
from segone.models.pipeline import ScoreReport, customer_scores, stage_frame, tastes
from segone.models.settings import ModelSettings
from segone.profiles import profiles_expr
from segone.schema import TS
from segone.segments.batch import memberships
from segone.segments.lifecycle import LifecycleSettings
from segone.segments.rules import Catalogue
from segone.store.base import Warehouse

LIFECYCLE = "lifecycle:"


@dataclass
class SnapshotResult:
    at: datetime
    members: int
    entered: int
    exited: int
    moves: int


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
    last = wh.execute(wh.table("segment_snapshots").at.max())
    if last is not None and str(last) != "NaT" and at <= last.to_pydatetime():
        raise SegoneError(
            f"snapshots go forward in time: {at:%Y-%m-%d %H:%M} is not after the "
            f"last one ({last:%Y-%m-%d %H:%M})"
        )
    when = ibis.literal(at, type=TS)
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
        with wh.transaction():
            wh.replace("profiles", profiles_expr(wh, when, stages=stages, scores=scores))
    p = wh.table("profiles")
    stage = p.select("customer_id", segment=lit(LIFECYCLE) + p.lifecycle_stage)
    snap = wh.materialize(
        "_segone_snap", ibis.union(memberships(wh, cat, at), stage, distinct=True)
    )
    hist = wh.table("segment_memberships")
    keys = ["customer_id", "segment"]
    open_ = hist.filter(hist.exited_at.isnull())
    entered = wh.materialize("_segone_entered", snap.anti_join(open_, keys))
    # the open row of a membership is (customer_id, segment, entered_at): a person may have
    # been in the same segment before, in rows that are closed and must stay as they are
    exited = wh.materialize(
        "_segone_exited", open_.anti_join(snap, keys).select(*keys, "entered_at")
    )
    moves = _transitions(entered, exited, when)
    n_moves = int(wh.execute(moves.count()))
    result = SnapshotResult(
        at,
        wh.count("_segone_snap"),
        wh.count("_segone_entered"),
        wh.count("_segone_exited"),
        n_moves,
    )
    # History is only appended to and closed, never rewritten: a snapshot costs what changed,
    # not the size of the history so far.
    with wh.transaction():
        wh.delete_matching("segment_memberships", exited, [*keys, "entered_at"])
        wh.insert("segment_memberships", exited.mutate(exited_at=when))
        wh.insert(
            "segment_memberships",
            entered.select(*keys, entered_at=when, exited_at=ibis.null(TS)),
        )
        wh.insert("transitions", moves)
        wh.insert(
            "segment_snapshots",
            ibis.memtable(
                pa.table(
                    {
                        "at": pa.array([at], pa.timestamp("us", "UTC")),
                        "members": [result.members],
                        "entered": [result.entered],
                        "exited": [result.exited],
                    }
                )
            ),
        )
    if models is None or models.enabled:
        result.moves += tastes(wh, at, models or ModelSettings())
    if rebuild_profiles:
        with wh.transaction():
            wh.replace("profiles", wh.table("_segone_built_profiles"))
    for n in (
        "_segone_snap",
        "_segone_entered",
        "_segone_exited",
        "_segone_snap_scores",
        "_segone_built_profiles",
    ):
        wh.drop_staging(n)
    return result


def _transitions(entered: ibis.Table, exited: ibis.Table, when: ibis.Value) -> ibis.Table:
    """Lifecycle moves (from one stage to the next) and segment entries and exits."""
    lc_in = entered.filter(entered.segment.startswith(LIFECYCLE))
    lc_out = exited.filter(exited.segment.startswith(LIFECYCLE)).select(
        "customer_id", from_segment="segment"
    )
    lc = lc_in.left_join(lc_out, "customer_id").select(
        customer_id=lc_in.customer_id,
        from_segment=lc_out.from_segment,
        to_segment=lc_in.segment,
        at=when,
        kind=lit("lifecycle"),
    )
    seg_in = entered.filter(~entered.segment.startswith(LIFECYCLE)).select(
        "customer_id",
        from_segment=ibis.null("string"),
        to_segment="segment",
        at=when,
        kind=lit("segment"),
    )
    seg_out = exited.filter(~exited.segment.startswith(LIFECYCLE)).select(
        "customer_id",
        from_segment="segment",
        to_segment=ibis.null("string"),
        at=when,
        kind=lit("segment"),
    )
    return ibis.union(lc, seg_in, seg_out, distinct=False)


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


def transition_matrix(wh: Warehouse) -> ibis.Table:
    """Lifecycle moves counted by (from, to) stage."""
    t = wh.table("transitions")
    t = t.filter(t.kind == "lifecycle")
    t = t.mutate(
        from_stage=t.from_segment.replace(LIFECYCLE, "").fill_null("(first seen)"),
        to_stage=t.to_segment.replace(LIFECYCLE, ""),
    )
    return t.group_by(["from_stage", "to_stage"]).aggregate(moves=t.count())

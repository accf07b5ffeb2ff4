"""Segments that follow people: membership history and transitions from as-of snapshots.

Each snapshot (``record_snapshot``) evaluates every segment, and every person's lifecycle stage
(as segment ``lifecycle:<stage>``), as of a date, and compares with the memberships still open:
people who entered get a row with ``entered_at``; people who left get ``exited_at``; every move
is a row of ``transitions`` (lifecycle moves from one stage to another, segment entries and
exits, and taste shifts: a person's recent purchases leaving their long-term favourite
category).

This module records one snapshot on the profiles as they stand (``record``); rebuilding the
profiles as of the snapshot's date and backfilling a date range is the batch pipeline's job
(``segone.pipeline.backfill``), which sits above the profiles and models this module must not
import.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import ibis
import pyarrow as pa

from segone.exceptions import SegoneError
from segone.exprs import lit
from segone.schema import TS
from segone.segments.batch import memberships
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


def check_forward(wh: Warehouse, at: datetime) -> None:
    """Raise unless ``at`` comes after the last recorded snapshot: history only moves forward."""
    last = wh.execute(wh.table("segment_snapshots").at.max())
    if last is not None and str(last) != "NaT" and at <= last.to_pydatetime():
        raise SegoneError(
            f"snapshots go forward in time: {at:%Y-%m-%d %H:%M} is not after the "
            f"last one ({last:%Y-%m-%d %H:%M})"
        )


def record(wh: Warehouse, cat: Catalogue, at: datetime) -> SnapshotResult:
    """Evaluate every segment and lifecycle stage on the ``profiles`` table as it stands, as of
    ``at``, and record what changed. ``segone.pipeline.backfill.record_snapshot`` first rebuilds
    the profiles as of ``at`` (and detects taste shifts after)."""
    check_forward(wh, at)
    when = ibis.literal(at, type=TS)
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
    for n in ("_segone_snap", "_segone_entered", "_segone_exited"):
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


def transition_matrix(wh: Warehouse) -> ibis.Table:
    """Lifecycle moves counted by (from, to) stage."""
    t = wh.table("transitions")
    t = t.filter(t.kind == "lifecycle")
    t = t.mutate(
        from_stage=t.from_segment.replace(LIFECYCLE, "").fill_null("(first seen)"),
        to_stage=t.to_segment.replace(LIFECYCLE, ""),
    )
    return t.group_by(["from_stage", "to_stage"]).aggregate(moves=t.count())

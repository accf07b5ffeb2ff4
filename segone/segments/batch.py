"""Segment membership in batch: every segment of a catalogue over the ``profiles`` table."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
import pandas as pd

from segone.exceptions import SegoneError
from segone.schema import TS
from segone.segments.rules import Catalogue, Did, compile_rule, event_column, events_used
from segone.store.base import Warehouse


def require_profiles(wh: Warehouse) -> None:
    """A clear error when nothing has been built yet."""
    if "profiles" not in wh.tables():
        raise SegoneError("no profiles yet: run `segone build` first")


def profile_attributes(wh: Warehouse) -> dict[str, dt.DataType]:
    """Attribute name -> type of the built profiles (what rules may refer to)."""
    require_profiles(wh)
    return dict(wh.table("profiles").schema().items())


def customer_events(wh: Warehouse) -> ibis.Table:
    """Events with the customer they belong to and the name rules match on."""
    ev = wh.table("events")
    rc = wh.table("record_customers")
    rc = rc.filter(rc.record_table == "events")
    j = ev.join(rc, ev.message_id == rc.record_key)
    return j.select(
        "customer_id",
        name=ibis.ifelse(j.type.isin(["page", "screen"]), j.name, j.event),
        timestamp=j.timestamp,
    )


def with_event_counts(wh: Warehouse, cat: Catalogue, as_of: ir.TimestampValue) -> ibis.Table:
    """``profiles`` plus one count column per event condition the catalogue uses."""
    p = wh.table("profiles")
    dids: dict[str, Did] = {}
    for seg in cat:
        for d in events_used(seg.rule, cat):
            dids[event_column(d)] = d
    if not dids:
        return p
    ev = customer_events(wh)
    for col, d in dids.items():
        e = ev.filter((ev.name == d.event) & (ev.timestamp <= as_of))
        if d.within_days is not None:
            e = e.filter(e.timestamp > as_of - ibis.interval(seconds=int(d.within_days * 86_400)))
        counts = e.group_by("customer_id").aggregate(**{col: e.count()})
        p = p.left_join(counts, "customer_id").drop("customer_id_right")
    return p


def memberships(wh: Warehouse, cat: Catalogue, as_of: datetime) -> ibis.Table:
    """(customer_id, segment) for every member of every segment, as of ``as_of``."""
    cutoff = ibis.literal(as_of, type=TS)
    t = wh.materialize("_segone_seg_base", with_event_counts(wh, cat, cutoff))
    parts = [
        t.filter(compile_rule(seg.rule, t, cat)).select(
            "customer_id", segment=ibis.literal(seg.name, type="string")
        )
        for seg in cat
    ]
    return (
        ibis.union(*parts, distinct=False)
        if parts
        else t.select("customer_id").limit(0).mutate(segment=ibis.literal("", type="string"))
    )


def summary(wh: Warehouse, cat: Catalogue, as_of: datetime) -> pd.DataFrame:
    """Members per segment and their share of all profiles."""
    m = memberships(wh, cat, as_of)
    counts = wh.execute(m.group_by("segment").aggregate(members=m.count()))
    total = wh.count("profiles")
    rows: list[dict[str, Any]] = []
    got = dict(zip(counts.segment, counts.members, strict=True))
    for seg in cat:
        n = int(got.get(seg.name, 0))
        rows.append(
            {
                "segment": seg.name,
                "members": n,
                "share": n / total if total else 0.0,
                "description": seg.description,
            }
        )
    wh.drop_staging("_segone_seg_base")
    return pd.DataFrame(rows)

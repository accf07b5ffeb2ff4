"""Questions asked of a built project's segments: sizes, members, audiences, the RFM grid.

The command line renders these; tests and notebooks call them directly. Each takes an open
warehouse and the project's catalogue (``segone.segments.project_catalogue``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import ibis
import pandas as pd

from segone.exceptions import NotFoundError
from segone.segments.batch import memberships, summary
from segone.segments.rules import Catalogue, Segment
from segone.store.base import Warehouse


def last_as_of(wh: Warehouse) -> datetime:
    """The as-of time of the profiles (the last build's)."""
    p = wh.table("profiles")
    value: Any = wh.execute(p.as_of.max())
    return value.to_pydatetime() if hasattr(value, "to_pydatetime") else value


def require_segment(cat: Catalogue, name: str) -> Segment:
    """The segment ``name``; a clear error naming the known ones (and the closest) if none."""
    if name not in cat.segments:
        from segone.segments.vocabulary import closest

        close = closest(name, list(cat.segments))
        hint = f" (did you mean {close!r}?)" if close else ""
        raise NotFoundError(
            f"no segment {name!r}{hint}; known: {', '.join(cat.segments) or 'none'}"
        )
    seg: Segment = cat[name]
    return seg


def segment_sizes(wh: Warehouse, cat: Catalogue, names: list[str] | None = None) -> pd.DataFrame:
    """Members and share of every segment (or of ``names``) as of the last build: columns
    segment, members, share, description."""
    df = summary(wh, cat, last_as_of(wh))
    return df if names is None else df[df.segment.isin(names)].reset_index(drop=True)


@dataclass(frozen=True)
class SegmentDetail:
    """A segment's definition, size, and its first members by customer id."""

    name: str
    source: str
    description: str
    rule: str
    members: int
    sample: list[str]


def segment_detail(wh: Warehouse, cat: Catalogue, name: str, limit: int = 10) -> SegmentDetail:
    """What ``segone segments show NAME`` prints."""
    from segone.segments.rules import describe

    seg = require_segment(cat, name)
    m = memberships(wh, cat, last_as_of(wh))
    m = m.filter(m.segment == name)
    n = int(wh.execute(m.count()))
    first = wh.execute(m.select("customer_id").order_by("customer_id").limit(limit))
    return SegmentDetail(
        name=seg.name,
        source=str(seg.source),
        description=seg.description,
        rule=describe(seg.rule),
        members=n,
        sample=[str(c) for c in first.customer_id],
    )


def segment_members(wh: Warehouse, cat: Catalogue, name: str) -> ibis.Table:
    """The members of ``name`` with their profile (scalar columns only: an audience file for a
    channel), by customer id."""
    require_segment(cat, name)
    m = memberships(wh, cat, last_as_of(wh))
    p = wh.table("profiles")
    members = m.filter(m.segment == name).select("customer_id")
    keep = [c for c, t in p.schema().items() if not (t.is_map() or t.is_array())]
    return p.semi_join(members, "customer_id").select(*keep).order_by("customer_id")


def rfm_grid(wh: Warehouse) -> pd.DataFrame:
    """People per RFM-grid segment of ``macro_segments``, largest first."""
    m = wh.table("macro_segments")
    return wh.execute(
        m.group_by("rfm_segment").aggregate(people=m.count()).order_by(ibis.desc("people"))
    )


def names_in(file: Path) -> list[str]:
    """The names of the segments a YAML file defines (in file order)."""
    import yaml

    data = yaml.safe_load(file.read_text(encoding="utf-8")) or []
    items = data.get("segments", data) if isinstance(data, dict) else data
    return [str(i["name"]) for i in (items if isinstance(items, list) else [items])]

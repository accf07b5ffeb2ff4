"""``project.segments``: the project's segment catalogue, its members, and its history."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from segone.exceptions import SegoneError
from segone.segments.history import SnapshotResult

if TYPE_CHECKING:
    from segone.project import Project
    from segone.segments.rules import Catalogue
    from segone.store.base import Warehouse


def last_build_at(wh: Warehouse) -> datetime:
    """The as-of date of the profiles the last build wrote."""
    if "profiles" not in wh.tables():
        raise SegoneError("no profiles yet: run `segone build`")
    p = wh.table("profiles")
    at = wh.execute(p.as_of.max())
    if at is None or str(at) == "NaT":
        raise SegoneError("no profiles yet: run `segone build`")
    return at.to_pydatetime()


def _require(cat: Catalogue, name: str) -> None:
    if name not in cat.segments:
        raise SegoneError(f"no segment {name!r}; known: {', '.join(cat.segments) or 'none'}")


class Segments:
    """The segments of one project: built-in ones and its ``segments/*.yaml`` files."""

    def __init__(self, project: Project) -> None:
        self._project = project

    def catalogue(self, wh: Warehouse, extra: list[Path] | None = None) -> Catalogue:
        """Every segment the project defines (plus those of the ``extra`` files)."""
        from segone.segments import project_catalogue

        return project_catalogue(self._project, wh, extra)

    def summary(self, extra: list[Path] | None = None) -> pd.DataFrame:
        """Members and share of every segment, as of the last build."""
        from segone.segments import summary

        with self._project.warehouse(read_only=True) as wh:
            return summary(wh, self.catalogue(wh, extra), last_build_at(wh))

    def preview(self, file: Path) -> pd.DataFrame:
        """Members and share of the segments a YAML file defines, as of the last build (the
        file is checked first: a bad one fails naming its line)."""
        import yaml

        data = yaml.safe_load(Path(file).read_text(encoding="utf-8")) or []
        items = data.get("segments", data) if isinstance(data, dict) else data
        names = [str(i["name"]) for i in (items if isinstance(items, list) else [items])]
        df = self.summary([Path(file)])
        return df[df.segment.isin(names)].reset_index(drop=True)

    def export(self, name: str) -> pd.DataFrame:
        """The members of segment ``name`` with their profile (the columns a file can hold:
        no maps or lists), sorted by customer id: an audience file for a channel."""
        from segone.segments import memberships

        with self._project.warehouse(read_only=True) as wh:
            cat = self.catalogue(wh)
            _require(cat, name)
            m = memberships(wh, cat, last_build_at(wh))
            p = wh.table("profiles")
            members = m.filter(m.segment == name).select("customer_id")
            keep = [c for c, t in p.schema().items() if not (t.is_map() or t.is_array())]
            return wh.execute(
                p.semi_join(members, "customer_id").select(*keep).order_by("customer_id")
            )

    def members(self, name: str, *, limit: int | None = None) -> list[str]:
        """The customer ids in segment ``name`` as of the last build, sorted."""
        from segone.segments import memberships

        with self._project.warehouse(read_only=True) as wh:
            cat = self.catalogue(wh)
            _require(cat, name)
            m = memberships(wh, cat, last_build_at(wh))
            ids = m.filter(m.segment == name).select("customer_id").order_by("customer_id")
            if limit is not None:
                ids = ids.limit(limit)
            return [str(x) for x in wh.execute(ids).customer_id]

    def snapshot(self, at: datetime | None = None) -> SnapshotResult:
        """Record who is in which segment and stage as of ``at`` (default: the last build's,
        on the built profiles; a date rebuilds the profiles as of then)."""
        from segone.pipeline.backfill import record_snapshot

        s = self._project.settings
        with self._project.warehouse() as wh:
            return record_snapshot(
                wh,
                self.catalogue(wh),
                at or last_build_at(wh),
                s.lifecycle,
                rebuild_profiles=at is not None,
                models=s.models,
            )

    def backfill(
        self,
        start: datetime,
        end: datetime,
        every_days: int = 7,
        progress: Callable[[int, int, datetime], None] | None = None,
    ) -> list[SnapshotResult]:
        """Snapshots from ``start`` to ``end``, every ``every_days`` days."""
        from segone.pipeline.backfill import backfill

        s = self._project.settings
        with self._project.warehouse() as wh:
            return backfill(
                wh,
                self.catalogue(wh),
                start,
                end,
                every_days,
                s.lifecycle,
                progress=progress,
                models=s.models,
            )

    def transitions(self) -> pd.DataFrame:
        """Lifecycle moves counted by (from_stage, to_stage)."""
        from segone.segments.history import transition_matrix

        with self._project.warehouse(read_only=True) as wh:
            return wh.execute(transition_matrix(wh))

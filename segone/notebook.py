"""A project opened from a notebook: read-only, tables out as Arrow, pandas or polars, and never
in the way of a build or the server.

::

    import segone

    p = segone.open("my-project")
    p.customers().to_pandas()          # one row per customer: the profiles
    p.profile("jane@example.com")      # one person: profile, identifiers, timeline, ...
    p.segment("vip").to_polars()       # a segment's members with their profile
    p.sql("select lifecycle_stage, count(*) from profiles group by 1").to_arrow()

The notebook never keeps the warehouse open (that would make ``segone build`` fail for as long
as the notebook lives): it reads a private **snapshot** (``segone.store.snapshot``, the same
copy the dashboard reads), refreshed before each call if the warehouse changed since; while a
build holds the warehouse, the notebook keeps reading the previous snapshot
(``p.snapshot_time`` says when it was taken).
"""

from __future__ import annotations

import builtins
import shutil
import tempfile
import weakref
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segone.exceptions import AmbiguousError, NotFoundError, SegoneError, StoreError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from segone.config import Settings
    from segone.store.duckdb import DuckDBWarehouse
    from segone.store.snapshot import WarehouseSnapshot


@dataclass(frozen=True)
class Frame:
    """A result table, handed out in the form the caller works with."""

    table: pa.Table

    def to_arrow(self) -> pa.Table:
        return self.table

    def to_pandas(self) -> pd.DataFrame:
        return self.table.to_pandas()

    def to_polars(self) -> Any:
        """A polars DataFrame (polars is optional: ``pip install polars``)."""
        try:
            import polars as pl  # type: ignore[import-not-found, unused-ignore]
        except ImportError:
            raise SegoneError(
                "to_polars() needs polars, which is not installed: `pip install polars` "
                "(or use to_pandas() / to_arrow())"
            ) from None
        return pl.from_arrow(self.table)

    @property
    def columns(self) -> builtins.list[str]:
        return list(self.table.column_names)

    def __len__(self) -> int:
        return self.table.num_rows

    def __repr__(self) -> str:
        return f"<Frame {self.table.num_rows:,} rows x {self.table.num_columns} columns>"


class NotebookProject:
    """A read-only view of a project over snapshots of its warehouse (see the module doc)."""

    def __init__(self, settings: Settings) -> None:
        from segone.store.snapshot import WarehouseSnapshot

        self.settings = settings
        self._dir = Path(tempfile.mkdtemp(prefix="segone-notebook-"))
        self._snapshot = WarehouseSnapshot(
            settings.warehouse_path,
            self._dir,
            threads=settings.warehouse.threads,
            memory_limit=settings.warehouse.memory_limit,
            # not frozen: sql() may create tables on the copy, which the next call should see
            frozen=False,
        )
        self._cleanup = weakref.finalize(self, _remove, self._dir, self._snapshot)

    @property
    def root(self) -> Path:
        return self.settings.root

    @property
    def snapshot_time(self) -> datetime | None:
        """When the snapshot being read was taken (None before the first call)."""
        return self._snapshot.copied_at

    # ------------------------------------------------------------------ snapshots
    def refresh(self) -> bool:
        """Take a new snapshot if the warehouse changed; False when the current one is kept
        (nothing changed, or a build holds the warehouse right now)."""
        return self._snapshot.refresh()

    def warehouse(self) -> DuckDBWarehouse:
        """The current snapshot as a ``Warehouse`` (refreshed first), for library functions."""
        return self._snapshot.warehouse()

    def close(self) -> None:
        """Drop the snapshot (also done when the object is garbage collected)."""
        self._cleanup()

    def __enter__(self) -> NotebookProject:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ tables
    def tables(self) -> builtins.list[str]:
        """The tables of the warehouse."""
        return sorted(self.warehouse().tables())

    def table(self, name: str) -> Frame:
        """Any warehouse table, whole (see ``docs/data-model.md``)."""
        wh = self.warehouse()
        if name not in wh.tables():
            raise NotFoundError(f"no table {name!r}; tables: {', '.join(sorted(wh.tables()))}")
        return Frame(wh.to_arrow(wh.table(name)))

    def customers(self) -> Frame:
        """One row per customer: the profiles of the last build (``docs/profiles.md``)."""
        from segone.segments.batch import require_profiles

        wh = self.warehouse()
        require_profiles(wh)
        return Frame(wh.to_arrow(wh.table("profiles").order_by("customer_id")))

    def profile(self, identifier: str, timeline: int = 20) -> dict[str, Any]:
        """One person by any identifier (any spelling, or ``type:value``): ``profile`` (a
        dict), and pandas frames ``identifiers``, ``journey``, ``transitions``,
        ``recommendations`` and ``timeline``."""
        from segone.profiles.lookup import find_customers, profile_of
        from segone.segments.batch import require_profiles

        wh = self.warehouse()
        require_profiles(wh)
        ids = find_customers(wh, identifier, self.settings.identity.default_country_code)
        if not ids:
            raise NotFoundError(f"no customer has the identifier {identifier!r}")
        if len(ids) > 1:
            raise AmbiguousError(
                f"the identifier names {len(ids)} customers ({', '.join(ids[:5])}); "
                "ask for one of them by customer id"
            )
        return profile_of(wh, ids[0], timeline)

    def segments(self) -> Frame:
        """Every segment with its members and share as of the last build."""
        import pyarrow as pa

        from segone.segments import project_catalogue
        from segone.segments.queries import segment_sizes

        wh = self.warehouse()
        df = segment_sizes(wh, project_catalogue(self, wh))
        return Frame(pa.Table.from_pandas(df, preserve_index=False))

    def segment(self, name: str) -> Frame:
        """The members of a segment with their profile, by customer id."""
        from segone.segments import project_catalogue
        from segone.segments.queries import segment_members

        wh = self.warehouse()
        return Frame(wh.to_arrow(segment_members(wh, project_catalogue(self, wh), name)))

    def sql(self, query: str) -> Frame:
        """A SQL query (DuckDB's dialect) over the snapshot; it cannot change the project."""
        import duckdb

        wh = self.warehouse()
        try:
            return Frame(wh.backend.raw_sql(query).to_arrow_table())
        except duckdb.Error as exc:
            raise StoreError(str(exc), query) from None

    def __repr__(self) -> str:
        when = f"{self.snapshot_time:%Y-%m-%d %H:%M:%S} UTC" if self.snapshot_time else "none yet"
        return f"<segone project {self.root} (read-only; snapshot: {when})>"


def _remove(folder: Path, snapshot: WarehouseSnapshot) -> None:
    snapshot.close()
    shutil.rmtree(folder, ignore_errors=True)


def open(path: str | Path = ".") -> NotebookProject:
    """Open the project at ``path`` read-only for a notebook or a script (see the module doc)."""
    from segone.config import Settings

    return NotebookProject(Settings.load(Path(path)))

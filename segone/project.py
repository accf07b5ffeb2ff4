"""A segone project: a directory with ``segone.toml`` and the embedded warehouse.

``Project`` is the facade users, notebooks and the CLI call: ``project.build()``,
``project.publish()``, and its parts ``project.segments`` and ``project.models``
(``segone.parts``). Everything heavy is imported when first used, so that opening a project
stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segone.config import CONFIG_FILE, DEFAULT_TOML, Settings
from segone.exceptions import ProjectError
from segone.store.base import Warehouse
from segone.store.duckdb import DuckDBWarehouse

if TYPE_CHECKING:
    from segone.parts.models import Models
    from segone.parts.segments import Segments
    from segone.pipeline.build import ProjectBuild
    from segone.pipeline.publish import SyncResult


@dataclass
class Project:
    settings: Settings

    @property
    def root(self) -> Path:
        return self.settings.root

    @classmethod
    def init(cls, root: str | Path, *, exist_ok: bool = False) -> Project:
        """Create ``root`` with a default ``segone.toml`` and an empty warehouse."""
        root = Path(root)
        cfg = root / CONFIG_FILE
        if cfg.exists() and not exist_ok:
            raise ProjectError(f"{root} is already a segone project ({CONFIG_FILE} exists)")
        root.mkdir(parents=True, exist_ok=True)
        if not cfg.exists():
            cfg.write_text(DEFAULT_TOML, encoding="utf-8")
        seg_dir = root / "segments"
        if not seg_dir.exists():  # example segments to start from; edit or delete them
            seg_dir.mkdir()
            examples = resources.files("segone.segments").joinpath("examples/examples.yaml")
            (seg_dir / "examples.yaml").write_text(
                examples.read_text(encoding="utf-8"), encoding="utf-8"
            )
        project = cls(Settings.load(root))
        with project.warehouse() as wh:
            wh.ensure_tables()
        return project

    @classmethod
    def open(
        cls, root: str | Path, *, flags: Mapping[str, Mapping[str, Any]] | None = None
    ) -> Project:
        """The project at ``root``; ``flags`` override its settings (``segone --set``)."""
        return cls(Settings.load(root, flags=flags))

    def warehouse(self, *, read_only: bool = False) -> Warehouse:
        """The project's warehouse on the engine its settings name (DuckDB unless
        ``[warehouse] engine = "spark"``, see docs/scale.md)."""
        s = self.settings
        wh: Warehouse
        if s.warehouse.engine == "spark":
            from segone.store.spark import SparkWarehouse  # pyspark is an optional extra

            path = Path(s.warehouse.spark_path)
            wh = SparkWarehouse(
                path if path.is_absolute() else self.root / path,
                master=s.warehouse.spark_master,
                driver_memory=s.warehouse.spark_driver_memory,
                read_only=read_only,
            )
        else:
            wh = DuckDBWarehouse(
                s.warehouse_path,
                threads=s.warehouse.threads,
                memory_limit=s.warehouse.memory_limit,
                read_only=read_only,
            )
        if not read_only:  # a project made by an older segone gets the tables added since
            wh.ensure_tables()
        return wh

    # -- the batch pipeline ------------------------------------------------------------------
    def build(
        self,
        *,
        as_of: datetime | None = None,
        online: bool = True,
        create_online: bool = False,
        status: Callable[[str], AbstractContextManager[Any]] | None = None,
    ) -> ProjectBuild:
        """``segone build``: the server's new data in, identities, profiles, models, and the
        results out to the online store (``segone.pipeline.build.build_project``)."""
        from segone.pipeline.build import build_project

        return build_project(
            self, as_of=as_of, online=online, create_online=create_online, status=status
        )

    def publish(self, *, create_online: bool = True) -> SyncResult:
        """Copy the last build's per-customer results to the online store."""
        from segone.pipeline.publish import open_online, publish

        store = open_online(self.settings, create=create_online)
        if store is None:
            raise ProjectError(
                f"{self.root} has no online store yet: run `segone serve` or publish with "
                "create_online=True"
            )
        try:
            with self.warehouse() as wh:
                return publish(wh, store, self.settings)
        finally:
            store.close()

    # -- parts -------------------------------------------------------------------------------
    @cached_property
    def segments(self) -> Segments:
        """The project's segments: catalogue, members, snapshots, backfill, transitions."""
        from segone.parts.segments import Segments

        return Segments(self)

    @cached_property
    def models(self) -> Models:
        """The model fits the builds recorded."""
        from segone.parts.models import Models

        return Models(self)

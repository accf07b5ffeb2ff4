"""A segone project: a directory with ``segone.toml`` and the embedded warehouse."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from segone.config import CONFIG_FILE, DEFAULT_TOML, Settings
from segone.exceptions import ProjectError
from segone.store.base import Warehouse
from segone.store.duckdb import DuckDBWarehouse


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
    def open(cls, root: str | Path) -> Project:
        return cls(Settings.load(root))

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

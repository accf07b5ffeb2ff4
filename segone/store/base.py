"""The warehouse interface every engine implements (DuckDB now, Spark later).

Pipelines build Ibis expressions and hand them to a ``Warehouse``; they never hold a
connection themselves, so the same pipeline can run on another engine.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import ibis
import pandas as pd
import pyarrow as pa

from segone.schema import TABLES, table_schema


class Warehouse(abc.ABC):
    """One analytical engine holding the canonical tables."""

    #: The file loader (``segone.ingest``) runs on this engine. When False, a load runs in a
    #: scratch DuckDB and its rows are appended here (``segone.ingest.relay``).
    native_ingest: bool = True

    @property
    @abc.abstractmethod
    def backend(self) -> Any:
        """The Ibis backend (for engine-specific tests and tools, not for pipelines)."""

    # -- tables -----------------------------------------------------------------------------
    def ensure_tables(self) -> None:
        """Create every canonical table that does not exist yet (idempotent)."""
        existing = set(self.backend.list_tables())
        for name in TABLES:
            if name not in existing:
                self.backend.create_table(name, schema=table_schema(name))

    def table(self, name: str) -> ibis.Table:
        return self.backend.table(name)

    def tables(self) -> list[str]:
        return sorted(self.backend.list_tables())

    def count(self, name: str) -> int:
        return int(self.execute(self.table(name).count()))

    # -- execution ---------------------------------------------------------------------------
    @abc.abstractmethod
    def execute(self, expr: ibis.Expr) -> Any:
        """Run an expression; a table expression returns a pandas DataFrame."""

    @abc.abstractmethod
    def to_arrow(self, expr: ibis.Table) -> pa.Table:
        """Run a table expression and return Arrow."""

    @abc.abstractmethod
    def insert(self, name: str, expr: ibis.Table) -> None:
        """Append the rows of ``expr`` to table ``name`` (columns matched by name)."""

    @abc.abstractmethod
    def stage(self, name: str, data: pa.Table, *, append: bool) -> ibis.Table:
        """Create (or append to) a temporary staging table from Arrow data."""

    def load_arrow(self, name: str, data: pa.Table) -> None:
        """Make the Arrow ``data`` the contents of the permanent table ``name``."""
        staged = self.stage("_segone_load", data, append=False)
        self.replace(name, staged)
        self.drop_staging("_segone_load")

    @abc.abstractmethod
    def delete_matching(self, name: str, keys: ibis.Table, on: list[str]) -> int:
        """Delete rows of ``name`` whose ``on`` columns equal a row of ``keys``; return how many."""

    @abc.abstractmethod
    def replace(self, name: str, expr: ibis.Table) -> None:
        """Create or replace the permanent table ``name`` with the rows of ``expr``."""

    @abc.abstractmethod
    def materialize(self, name: str, expr: ibis.Table) -> ibis.Table:
        """Compute ``expr`` once into a temporary table and return it."""

    @abc.abstractmethod
    def set_timezone(self, tz: str) -> None:
        """Time zone in which text timestamps without an offset are read."""

    def limit_memory(self, limit: str | None) -> str | None:
        """Set the engine's memory cap (``None``: leave it); returns the cap it replaced.

        Engines without a per-session cap ignore it (the default)."""
        return None

    @abc.abstractmethod
    def stage_expr(self, name: str, expr: ibis.Table, *, append: bool) -> ibis.Table:
        """Create (or append to) a temporary table from the rows of an expression."""

    @abc.abstractmethod
    def drop_staging(self, name: str) -> None:
        """Drop a temporary staging table if it exists."""

    @contextmanager
    @abc.abstractmethod
    def transaction(self) -> Iterator[None]:
        """Everything inside commits together or not at all."""
        yield

    @abc.abstractmethod
    def close(self) -> None: ...

    def checkpoint(self) -> None:  # noqa: B027 - engines without a log have nothing to do
        """Write what the engine holds in its log into the database file (after an erasure)."""

    def add_column(self, table: str, name: str, sql_type: str) -> None:
        """Add a nullable column to a table made by an older segone, if it lacks it."""
        if name not in self.table(table).columns:
            self.backend.raw_sql(f'ALTER TABLE "{table}" ADD COLUMN "{name}" {sql_type}')

    def splink(self, expr: ibis.Table) -> tuple[Any, Any] | None:
        """Splink's database API for this engine and ``expr`` as its input, for pair scoring
        that must run where the records are (probabilistic matching on a cluster).

        None (the default, an embedded engine): the records are small enough to be matched
        on this machine, by Splink's DuckDB backend.
        """
        return None

    def head(self, name: str, n: int = 5) -> pd.DataFrame:
        return self.execute(self.table(name).limit(n))

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

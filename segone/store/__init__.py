"""Warehouse access: the only code in segone that talks to an analytical engine."""

from segone.store.base import Warehouse
from segone.store.duckdb import DuckDBWarehouse

__all__ = ["DuckDBWarehouse", "Warehouse"]

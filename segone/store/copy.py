"""Moving a project's tables from one engine to another (DuckDB to Spark, when a shop outgrows
one machine): the canonical tables travel as Arrow, in batches, with their canonical schema."""

from __future__ import annotations

from collections.abc import Iterable

from segone.store.base import Warehouse


def copy_tables(
    src: Warehouse, dst: Warehouse, names: Iterable[str] | None = None
) -> dict[str, int]:
    """Copy tables ``names`` (default: every table of ``src``) into ``dst``, replacing them.

    Returns the rows copied per table. Staging goes through Arrow on the driver, so this is for
    moving a warehouse once; at scale, export Parquet from DuckDB and point Spark at it.
    """
    out: dict[str, int] = {}
    for name in names if names is not None else src.tables():
        data = src.to_arrow(src.table(name))
        dst.load_arrow(name, data)
        out[name] = data.num_rows
    return out

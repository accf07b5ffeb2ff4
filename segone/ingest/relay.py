"""Ingest into a warehouse whose engine cannot run the loader (Spark), through a local DuckDB.

The loader reads files with DuckDB-shaped steps (an order's rows fingerprinted in file order,
records rendered as JSON text, MD5 row hashes of text casts whose spelling differs between
engines). Rather than a second loader whose hashes would not match the first, a file bound for
such a warehouse is loaded by the same loader into a scratch DuckDB holding what the load is
checked against (keys already loaded, this file's quarantined rows, erasures and salts), and
the rows that load added are then appended to the real warehouse in one transaction.

A load through the relay therefore gives the same rows, hashes, duplicates and quarantine as a
load into DuckDB. Its cost: the key columns of the target table cross to this machine once per
file (one column of ids for events; fine to tens of millions of rows). Loading far more than
that at once is better done by writing the canonical tables as Parquet (docs/scale.md).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import ibis

from segone.ingest.kinds import TARGET_TABLE
from segone.store.base import Warehouse
from segone.store.duckdb import DuckDBWarehouse


def _inputs(kind: str, path: str) -> dict[str, tuple[list[str], Any]]:
    """table -> (columns, row filter or None) that a load of ``kind`` from ``path`` reads."""
    table = TARGET_TABLE.get(kind, kind)
    keys = {
        "events": ["message_id"],
        "interactions": ["interaction_id"],
        "enrichment": ["source", "row_hash"],
        "customers": ["source", "source_id", "row_hash", "loaded_at"],
        "products": ["source", "product_id", "row_hash", "loaded_at"],
        "orders": ["order_id", "row_hash"],
    }[kind]
    out: dict[str, tuple[list[str], Any]] = {
        "erased_identifiers": ([], None),
        "project_secrets": ([], None),
        # the same bad row of the same file is quarantined once
        "quarantine": ([], lambda q: q.source_file == path),
        table: (keys, None),
    }
    if kind == "orders":
        out.setdefault("orders", (["order_id", "row_hash"], None))
    return out


def ingest_through_duckdb(
    wh: Warehouse, kind: str, path: str | Path, load: Any, **options: Any
) -> Any:
    """``load(local_wh, kind, path, **options)`` (the loader) into a scratch DuckDB primed
    from ``wh``; then the load's rows, its quarantine, its ``loads`` row and any secret it
    created are appended to ``wh`` together. Returns the loader's result."""
    path = Path(path).resolve()
    with tempfile.TemporaryDirectory(prefix="segone-ingest-") as tmp:
        local = DuckDBWarehouse(Path(tmp) / "relay.duckdb")
        try:
            local.ensure_tables()
            for name, (cols, keep) in _inputs(kind, str(path)).items():
                t = wh.table(name)
                if keep is not None:
                    t = t.filter(keep(t))
                data = wh.to_arrow(t.select(*cols) if cols else t)
                if data.num_rows:
                    local.insert(name, ibis.memtable(data))
            result = load(local, kind, path, **options)
            if getattr(result, "dry_run", False):
                return result
            table = TARGET_TABLE.get(kind, kind)
            written = [table, "order_lines"] if kind == "orders" else [table]
            with wh.transaction():
                for name in [*written, "quarantine", "loads"]:
                    t = local.table(name)
                    _append(wh, name, local.to_arrow(t.filter(t.load_id == result.load_id)))
                had = wh.to_arrow(wh.table("project_secrets"))
                s = local.table("project_secrets")
                fresh = local.to_arrow(s.anti_join(ibis.memtable(had), ["name", "value"]))
                _append(wh, "project_secrets", fresh)
            return result
        finally:
            local.close()


def _append(wh: Warehouse, name: str, data: Any) -> None:
    if data.num_rows:
        staged = wh.stage("_segone_relay", data, append=False)
        wh.insert(name, staged)
        wh.drop_staging("_segone_relay")

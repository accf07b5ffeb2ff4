"""The loads of a project: list them, and undo one (a wrong mapping is fixed by undoing the
load and ingesting the file again)."""

from __future__ import annotations

import ibis
import pandas as pd
import pyarrow as pa

from segone.exceptions import IngestError
from segone.schema import TABLES
from segone.store.base import Warehouse

# every table a load writes to, each row stamped with its load_id (erasure records never are:
# an undo leaves them, so an erased person stays erased)
LOADED_TABLES = tuple(
    name
    for name, cols in TABLES.items()
    if name != "loads" and any(c.name == "load_id" for c in cols)
)


def list_loads(wh: Warehouse, limit: int | None = None) -> pd.DataFrame:
    """Loads, newest first: id, kind, file, rows read / loaded / rejected, when."""
    wh.ensure_tables()
    t = wh.table("loads")
    t = t.order_by([ibis.desc(t.finished_at), ibis.desc(t.load_id)])
    if limit:
        t = t.limit(limit)
    return wh.execute(
        t.select(
            "load_id",
            "kind",
            "path",
            "source",
            "rows_read",
            "rows_loaded",
            "lines_loaded",
            "rows_duplicate",
            "rows_rejected",
            "finished_at",
        )
    )


def undo_load(wh: Warehouse, load_id: str) -> dict[str, int]:
    """Remove every row load ``load_id`` added (canonical rows, quarantine entries and the load's
    own record), in one transaction; returns the rows removed per table.

    Derived tables (profiles, segments, scores) keep what the last build made of the rows until
    the next ``segone build``.
    """
    wh.ensure_tables()
    loads = wh.table("loads")
    if not int(wh.execute(loads.filter(loads.load_id == load_id).count())):
        raise IngestError(f"no load {load_id!r}; `segone loads` lists them")
    keys = ibis.memtable(pa.table({"load_id": [load_id]}))
    removed: dict[str, int] = {}
    with wh.transaction():
        for name in (*LOADED_TABLES, "loads"):
            n = wh.delete_matching(name, keys, ["load_id"])
            if n and name != "loads":
                removed[name] = n
    return removed


__all__ = ["LOADED_TABLES", "list_loads", "undo_load"]

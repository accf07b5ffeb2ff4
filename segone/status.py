"""What a project holds: rows per canonical table and a summary of the quarantine."""

from __future__ import annotations

from typing import Any

import ibis

from segone.schema import TABLES
from segone.store.base import Warehouse


def status_report(wh: Warehouse) -> dict[str, Any]:
    """Row counts per canonical table, and quarantined rows per kind and problem code."""
    existing = set(wh.tables())
    tables = {name: wh.count(name) if name in existing else 0 for name in TABLES}
    problems: list[dict[str, Any]] = []
    if tables.get("quarantine"):
        q = wh.table("quarantine")
        codes = q.select(q.kind, problem=q.problems.split("; ").unnest())
        df = wh.execute(
            codes.group_by(["kind", "problem"])
            .agg(rows=codes.count())
            .order_by(["kind", ibis.desc("rows")])
        )
        problems = [
            {"kind": r.kind, "problem": r.problem, "rows": int(r.rows)} for r in df.itertuples()
        ]
    return {"tables": tables, "quarantine": problems}


def quarantine_rows(
    wh: Warehouse, kind: str | None = None, limit: int = 20
) -> list[dict[str, Any]]:
    """Quarantined rows in file and line order: kind, file, line, problem codes and the full
    reason (which quotes the rejected values: show it only when asked)."""
    if "quarantine" not in wh.tables():
        return []
    q = wh.table("quarantine")
    if kind:
        q = q.filter(q.kind == kind)
    df = wh.execute(
        q.order_by([q.source_file, q.line])
        .select("kind", "source_file", "line", "problems", "reason")
        .limit(limit)
    )
    return [
        {
            "kind": r.kind,
            "source_file": r.source_file,
            "line": int(r.line),
            "problems": r.problems,
            "reason": r.reason,
        }
        for r in df.itertuples()
    ]

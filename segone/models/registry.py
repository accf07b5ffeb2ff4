"""Fitted models kept in the warehouse (`models` table): a version per fit and its data window."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import ibis
import pyarrow as pa

from segone.store.base import Warehouse


@dataclass(frozen=True)
class SavedModel:
    name: str
    version: int
    fitted_at: datetime
    window_start: datetime | None
    window_end: datetime
    rows: int
    params: dict[str, Any]
    metrics: dict[str, Any]


def save_model(
    wh: Warehouse,
    name: str,
    params: dict[str, Any],
    *,
    window_end: datetime,
    window_start: datetime | None = None,
    rows: int = 0,
    metrics: dict[str, Any] | None = None,
) -> int:
    """Append a fit of ``name`` and return its version (1 for the first fit)."""
    t = wh.table("models")
    last = wh.execute(t.filter(t.name == name).version.max())
    version = 1 if last is None or last != last else int(last) + 1
    ts = pa.timestamp("us", "UTC")
    wh.insert(
        "models",
        ibis.memtable(
            pa.table(
                {
                    "name": [name],
                    "version": pa.array([version], pa.int64()),
                    "fitted_at": pa.array([datetime.now(UTC)], ts),
                    "window_start": pa.array([window_start], ts),
                    "window_end": pa.array([window_end], ts),
                    "rows": pa.array([rows], pa.int64()),
                    "params": [json.dumps(params, sort_keys=True)],
                    "metrics": [json.dumps(metrics or {}, sort_keys=True)],
                }
            )
        ),
    )
    return version


def latest_model(wh: Warehouse, name: str) -> SavedModel | None:
    """The most recent fit of ``name``, or None."""
    t = wh.table("models")
    df = wh.execute(t.filter(t.name == name).order_by(ibis.desc("version")).limit(1))
    if df.empty:
        return None
    r = df.iloc[0]

    def when(v: Any) -> datetime | None:
        return None if v is None or v != v else v.to_pydatetime()

    end = when(r.window_end)
    fitted = when(r.fitted_at)
    assert end is not None and fitted is not None
    return SavedModel(
        name=str(r["name"]),
        version=int(r.version),
        fitted_at=fitted,
        window_start=when(r.window_start),
        window_end=end,
        rows=int(r.rows),
        params=json.loads(r.params),
        metrics=json.loads(r.metrics),
    )


def fitted_models(wh: Warehouse, *, history: bool = False) -> list[dict[str, Any]]:
    """Fits recorded in ``models``, by name and newest version first: only each model's latest
    fit unless ``history``. ``params`` and ``metrics`` are decoded; an empty list when no build
    has fitted anything yet."""
    if "models" not in wh.tables():
        return []
    t = wh.table("models")
    if not history:
        last = t.group_by("name").aggregate(version=t.version.max())
        t = t.semi_join(last, ["name", "version"])
    df = wh.execute(t.order_by(["name", ibis.desc("version")]))
    return [
        {
            "name": str(r["name"]),
            "version": int(r["version"]),
            "fitted_at": r["fitted_at"],
            "window_start": r["window_start"],
            "window_end": r["window_end"],
            "rows": int(r["rows"]),
            "params": json.loads(r["params"]),
            "metrics": json.loads(r["metrics"]),
        }
        for _, r in df.iterrows()
    ]


def top_value_customers(wh: Warehouse, n: int = 5) -> Any:
    """The ``n`` customers with the highest predicted lifetime value, with their first
    recommendation: its ``product_id``, ``name`` and ``category`` (null where the catalogue has
    none) and ``reason`` (products named) (a pandas frame, highest value first)."""
    from segone.profiles.lookup import with_names

    p = wh.table("profiles")
    r = wh.table("recommendations")
    top = p.filter(p.clv.notnull()).order_by(ibis.desc("clv")).limit(n)
    first = r.filter(r["rank"] == 1).select("customer_id", "product_id", "reason")
    df = wh.execute(
        top.left_join(first, "customer_id").select(
            "customer_id",
            "orders",
            "lifecycle_stage",
            "p_alive",
            "expected_purchases",
            "clv",
            "churn_probability",
            "product_id",
            "reason",
        )
    ).sort_values("clv", ascending=False)
    # the product's name and category (and the names of those its reason cites)
    return with_names(wh, df)

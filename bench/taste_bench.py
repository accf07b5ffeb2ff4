"""Taste-shift detection against the generator's life events, next to a naive baseline.

    python bench/taste_bench.py --customers 20000 --seed 7

Generates a store, ingests it, resolves identities, then runs the detector weekly over the
whole period (a backfill) and scores its detections against ``truth/life_events.parquet``:

- a detection is right when the customer's main true person had a life event, the detection
  comes on or after it, and its new top category is the event's target category;
- precision: right detections / all detections; recall: life events (whose target differs from
  the person's former top) with at least one right detection; delay: days from the event to the
  first right detection;
- "detectable": events followed by at least 3 purchase lines (and preceded by at least 2) before
  the data ends; recall is also given on that subset, the only one any detector could find.

The baseline fires when the top category of the last 90 days differs from the all-time top
(with the same once-per-shift rule); "baseline >= 3" also asks for 3 purchases in those 90 days.
A small sweep shows what the main thresholds do.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import ibis
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from segone.config import IngestSettings
from segone.datasets import SAMPLE_FILES, generate_sample
from segone.datasets.sample import SampleConfig
from segone.identity import resolve
from segone.ingest import ingest_file
from segone.models.taste import (
    PURCHASE,
    TasteShiftDetector,
    once_per_shift,
    taste_signals,
    weekly_grid,
)
from segone.store.base import Warehouse
from segone.store.duckdb import DuckDBWarehouse

MAPPING = {"customers_loyalty": {"source_id": "card_number", "loyalty_id": "card_number"}}


def baseline(signals: ibis.Table, at: list[datetime], days: int, min_recent: int) -> ibis.Table:
    """Top category of the last ``days`` days differs from the all-time top (purchases only)."""
    grid = ibis.memtable(pa.table({"at": pa.array(at, pa.timestamp("us", "UTC"))}))
    s = signals.filter(signals.source == PURCHASE)
    x = s.join(grid, s.ts <= grid.at)
    recent = (x.ts > x.at - ibis.interval(days=days)).cast("int64")
    pc = x.group_by(["at", "customer_id", "category"]).aggregate(r=recent.sum(), a=x.count())
    per = ["at", "customer_id"]
    pc = pc.mutate(
        n=pc.r.sum().over(group_by=per),
        _rr=ibis.row_number().over(group_by=per, order_by=[ibis.desc(pc.r), pc.category]),
        _ra=ibis.row_number().over(group_by=per, order_by=[ibis.desc(pc.a), pc.category]),
    )
    new = pc.filter((pc._rr == 0) & (pc.n >= max(min_recent, 1))).select(*per, new_top="category")
    old = pc.filter(pc._ra == 0).select(*per, old_top="category")
    c = new.join(old, per)
    c = c.filter(c.new_top != c.old_top).rename(detected_at="at")
    return once_per_shift(c)


@dataclass
class Truth:
    main_person: pd.DataFrame  # customer_id -> person_id
    events: pd.DataFrame  # person_id, happened_at, target, detectable


def load_truth(wh: Warehouse, truth_dir: Path, end: datetime) -> Truth:
    rec = pq.read_table(truth_dir / "records.parquet").to_pandas()
    rec = rec[~rec.rejected]
    src = rec.source.fillna("")
    rec["record_key"] = rec.key.where(src == "", src + ":" + rec.key)
    rc = wh.execute(wh.table("record_customers"))
    j = rc.merge(rec.rename(columns={"table": "record_table"}), on=["record_table", "record_key"])
    main = j.groupby(["customer_id", "person_id"]).size().rename("n").reset_index()
    main = main.sort_values(["n", "person_id"], ascending=[False, True])
    main = main.drop_duplicates("customer_id")[["customer_id", "person_id"]]

    life = pq.read_table(truth_dir / "life_events.parquet").to_pandas()
    life = life[life.top_category_before != life.top_category_after]
    # purchase lines per true person, as the signals count them
    o, ln = wh.table("orders"), wh.table("order_lines")
    ln = ln.filter(ln.returned_quantity.fill_null(0) < ln.quantity)
    lines = wh.execute(
        ln.join(o.filter(o.status != "cancelled"), "order_id").select("order_id", "ts")
    )
    orders = rec[rec.table == "orders"][["key", "person_id"]]
    lines = lines.merge(orders, left_on="order_id", right_on="key")
    lines = lines.merge(life[["person_id", "happened_at"]], on="person_id")
    after = lines[(lines.ts >= lines.happened_at) & (lines.ts <= end)].groupby("person_id").size()
    before = lines[lines.ts < lines.happened_at].groupby("person_id").size()
    life = life.assign(
        after=life.person_id.map(after).fillna(0).astype(int),
        before=life.person_id.map(before).fillna(0).astype(int),
    )
    life["detectable"] = (life.after >= 3) & (life.before >= 2)
    life = life.rename(columns={"top_category_after": "target"})
    return Truth(main, life[["person_id", "happened_at", "target", "detectable"]])


def score(det: pd.DataFrame, truth: Truth) -> dict[str, Any]:
    d = det.merge(truth.main_person, on="customer_id", how="left")
    d = d.merge(truth.events, on="person_id", how="left")
    right = d.target.notna() & (d.detected_at >= d.happened_at) & (d.new_top == d.target)
    d["right"] = right
    hits = d[right].groupby("person_id").detected_at.min()
    ev = truth.events.assign(first=truth.events.person_id.map(hits))
    found = ev["first"].notna()
    delay = (ev["first"] - ev.happened_at).dt.total_seconds()[found] / 86_400
    det_sub = ev[ev.detectable]
    return {
        "detections": len(d),
        "customers": d.customer_id.nunique(),
        "right": int(right.sum()),
        "precision": float(right.mean()) if len(d) else 0.0,
        "recall": float(found.mean()),
        "recall_detectable": float(det_sub["first"].notna().mean()),
        "delay_median": float(np.median(delay)) if len(delay) else float("nan"),
        "delay_p90": float(np.percentile(delay, 90)) if len(delay) else float("nan"),
        "repeat_customers": int((d.groupby("customer_id").size() > 1).sum()),
    }


def build_store(out: Path, customers: int, seed: int) -> float:
    t = time.perf_counter()
    generate_sample(out, customers=customers, seed=seed)
    with DuckDBWarehouse(out / "wh.duckdb") as wh:
        for kind, name in SAMPLE_FILES:
            ingest_file(wh, kind, out / "data" / name, settings=IngestSettings(mapping=MAPPING))
        resolve(wh)
    return time.perf_counter() - t


SWEEP: list[dict[str, Any]] = [
    {"threshold": 10.0},
    {"threshold": 12.0},
    {"threshold": 16.0},
    {"threshold": 18.0},
    {"min_recent": 4.0},
    {"min_history": 1.0},
    {"min_history": 4.0},
    {"min_share": 0.67},
    {"recent_days": 90.0},
    {"recent_days": 180.0},
    {"long_half_life_days": 180.0},
    {"prior_strength": 0.5},
    {"prior_strength": 8.0},
    {"view_weight": 0.0},
    {"view_weight": 1.0},
]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--customers", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--every-days", type=int, default=7)
    ap.add_argument("--no-sweep", action="store_true", help="only the defaults and the baseline")
    ap.add_argument(
        "--workdir",
        type=Path,
        help="keep the generated store here; a store already there is reused as it is",
    )
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = a.workdir or Path(tmp)
        built = "reused"
        if not (out / "wh.duckdb").exists():
            built = f"{build_store(out, a.customers, a.seed):.0f}s"
        end = datetime.fromisoformat(SampleConfig().end).replace(tzinfo=UTC) + timedelta(days=1)
        start = datetime.fromisoformat(SampleConfig().start).replace(tzinfo=UTC)
        grid = weekly_grid(start + timedelta(days=a.every_days), end, a.every_days)
        rows: list[tuple[str, dict[str, Any], float]] = []
        with DuckDBWarehouse(out / "wh.duckdb") as wh:
            truth = load_truth(wh, out / "truth", end)
            t = time.perf_counter()
            sig = wh.materialize("_taste_signals", taste_signals(wh))
            t_sig = time.perf_counter() - t
            for label, kw in [("defaults", {})] + (
                [] if a.no_sweep else [(_label(kw), kw) for kw in SWEEP]
            ):
                t = time.perf_counter()
                det = wh.execute(TasteShiftDetector(**kw).run(wh, grid, signals=sig))
                rows.append((label, score(det, truth), time.perf_counter() - t))
            for label, mr in (("baseline: top 90 d != all-time top", 1), ("baseline >= 3", 3)):
                t = time.perf_counter()
                det = wh.execute(baseline(sig, grid, 90, mr))
                rows.append((label, score(det, truth), time.perf_counter() - t))
            wh.drop_staging("_taste_signals")
    ev = truth.events
    print(f"```\n{' '.join(['python', *sys.argv])}\n```\n")
    print(
        f"{a.customers:,} people, seed {a.seed}; {len(grid)} weekly as-of dates "
        f"{grid[0]:%Y-%m-%d}..{grid[-1]:%Y-%m-%d}; store built in {built}, signals in "
        f"{t_sig:.1f}s. {len(ev):,} life events change the top category; "
        f"{int(ev.detectable.sum()):,} are detectable (>= 3 purchase lines after, >= 2 before). "
        f"Defaults: {_defaults()}.\n"
    )
    print(
        "| detector | detections | precision | recall | recall (detectable) "
        "| delay median d | delay p90 d | customers firing twice | time s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, s, secs in rows:
        print(
            f"| {label} | {s['detections']:,} | {s['precision']:.3f} | {s['recall']:.3f} | "
            f"{s['recall_detectable']:.3f} | {s['delay_median']:.0f} | {s['delay_p90']:.0f} | "
            f"{s['repeat_customers']:,} | {secs:.1f} |"
        )


def _label(kw: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in kw.items())


def _defaults() -> str:
    d = TasteShiftDetector()
    return ", ".join(
        f"{k}={v:g}" for k, v in vars(d).items() if isinstance(v, int | float) and k != "level"
    )


if __name__ == "__main__":
    main()

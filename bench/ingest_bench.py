"""Ingestion benchmark: segone's validated, idempotent load against DuckDB's own read of the
same file (the floor) and a plain pandas read+write.

    python bench/ingest_bench.py --customers 1000000

Generates a store (or reuses one with the same size and seed), then, each in its own process
so that peak memory is measured per step:
  * segone: ``ingest_file`` of every sample file into a fresh DuckDB warehouse (validation,
    quarantine, de-duplication, one transaction per file);
  * floor: DuckDB's own ``read_csv`` / ``read_json`` of the same file into a table of a fresh
    DuckDB file (all columns as text, no validation): what the engine alone costs;
  * baseline: pandas reads the same files (CSV with ``read_csv``, JSON Lines line by line with
    ``json.loads`` in chunks, skipping lines that fail) and writes them to Parquet, with no
    validation, no de-duplication and no transaction;
  * ``--dry-run`` on the file (segone reads and checks its first 10,000 rows).
Prints a Markdown table of rows/s and peak RSS, and the time ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _measure import run_measured, run_measured_cpu

SEGONE_STEP = """
import sys
from segone.config import IngestSettings
from segone.ingest import ingest_file
from segone.store.duckdb import DuckDBWarehouse
kind, path, db = sys.argv[1:4]
settings = IngestSettings(mapping={"customers_loyalty": {"source_id": "card_number",
                                                         "loyalty_id": "card_number"}})
# the project defaults, as a user gets them: the warehouse's 4GB cap, lowered to
# [ingest] memory_limit (1536MB) while the file loads
with DuckDBWarehouse(db, threads=2) as wh:
    r = ingest_file(wh, kind, path, settings=settings)
print(r.rows_read, r.loaded, r.rejected)
"""

DUCKDB_STEP = """
import sys, duckdb
path, db = sys.argv[1:3]
con = duckdb.connect(db, config={"threads": 2, "memory_limit": "8GB",
                                 "autoinstall_known_extensions": False,
                                 "autoload_known_extensions": False})
if path.endswith((".csv", ".csv.gz")):
    con.execute("CREATE TABLE t AS SELECT * FROM read_csv(?, all_varchar=true)", [path])
else:
    con.execute("CREATE TABLE t AS SELECT * FROM read_json(?, format='newline_delimited', "
                "ignore_errors=true)", [path])
print(con.execute("SELECT count(*) FROM t").fetchone()[0])
con.close()
"""

DRY_STEP = """
import sys
from segone.config import IngestSettings
from segone.ingest import ingest_file
from segone.store.duckdb import DuckDBWarehouse
kind, path = sys.argv[1:3]
settings = IngestSettings(mapping={"customers_loyalty": {"source_id": "card_number",
                                                         "loyalty_id": "card_number"}})
with DuckDBWarehouse(":memory:", threads=2) as wh:
    r = ingest_file(wh, kind, path, settings=settings, dry_run=True)
print(r.rows_read)
"""

PANDAS_STEP = """
import json, sys
import pandas as pd
path, out = sys.argv[1:3]
rows = 0
if path.endswith(".csv"):
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df.to_parquet(out)
    rows = len(df)
else:
    part = 0
    def flush(recs):
        global part
        df = pd.DataFrame.from_records(recs)
        for c in df.columns:
            if df[c].map(lambda v: isinstance(v, (dict, list))).any():
                df[c] = df[c].map(lambda v: json.dumps(v) if v is not None else None)
        df.to_parquet(f"{out}.{part}.parquet")
        part += 1
    recs = []
    with open(path) as f:
        for line in f:
            try:
                recs.append(json.loads(line))
            except ValueError:
                continue
            if len(recs) == 500_000:
                rows += len(recs); flush(recs); recs = []
    if recs:
        rows += len(recs); flush(recs)
print(rows)
"""


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workdir", type=Path, default=Path("bench/out"))
    ap.add_argument("--no-pandas", action="store_true", help="skip the pandas baseline")
    args = ap.parse_args()

    from segone.datasets import SAMPLE_FILES

    py = sys.executable
    sample = args.workdir / f"sample-{args.customers}-{args.seed}"
    stamp = sample / "truth" / "counts.json"
    if not stamp.exists():
        gen = (
            f"from segone.datasets import generate_sample; "
            f"generate_sample({str(sample)!r}, customers={args.customers}, seed={args.seed})"
        )
        secs, rss, _ = run_measured([py, "-c", gen])
        print(
            f"generated {args.customers:,} people in {secs:.0f}s, peak {rss:,.0f} MiB", flush=True
        )
    truth = json.loads(stamp.read_text())
    db = args.workdir / "bench.duckdb"
    base_out = args.workdir / "pandas"
    for p in (db, Path(f"{db}.wal")):
        p.unlink(missing_ok=True)
    shutil.rmtree(base_out, ignore_errors=True)
    base_out.mkdir(parents=True)

    rows = []
    floor_db = args.workdir / "floor.duckdb"
    for kind, name in SAMPLE_FILES:
        path = sample / "data" / name
        s_secs, s_rss, s_out, s_cpu = run_measured_cpu(
            [py, "-c", SEGONE_STEP, kind, str(path), str(db)]
        )
        read = int(s_out.split()[0])
        floor_db.unlink(missing_ok=True)
        d_secs, d_rss, _, d_cpu = run_measured_cpu(
            [py, "-c", DUCKDB_STEP, str(path), str(floor_db)]
        )
        floor_db.unlink(missing_ok=True)
        r_secs, _, _ = run_measured([py, "-c", DRY_STEP, kind, str(path)])
        if args.no_pandas:
            b_secs, b_rss, b_out = float("nan"), float("nan"), "0"
        else:
            b_secs, b_rss, b_out = run_measured(
                [py, "-c", PANDAS_STEP, str(path), str(base_out / name)]
            )
        rows.append(
            (
                name,
                read,
                s_secs,
                s_rss,
                d_secs,
                d_rss,
                r_secs,
                int(b_out),
                b_secs,
                b_rss,
                path.stat().st_size,
                s_cpu,
                d_cpu,
            )
        )
        print(
            f"{name}: segone {s_secs:.1f}s (CPU {s_cpu:.1f}s) {s_rss:,.0f} MiB | duckdb read "
            f"{d_secs:.1f}s (CPU {d_cpu:.1f}s) "
            f"{d_rss:,.0f} MiB | dry run {r_secs:.1f}s | pandas {b_secs:.1f}s {b_rss:,.0f} MiB",
            flush=True,
        )

    print()
    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; "
        f"{args.customers:,} people, seed {args.seed}"
    )
    print()
    print(
        "| file | MB | rows read | segone s | segone peak MiB | DuckDB read s | DuckDB peak MiB "
        "| ratio segone/DuckDB | CPU s segone / DuckDB | CPU ratio | dry run s | pandas s "
        "| ratio segone/pandas |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    tot_s = tot_d = tot_b = tot_sc = tot_dc = 0.0
    for row in rows:
        name, read, s_secs, s_rss, d_secs, d_rss, r_secs, _b, b_secs, _brss, size = row[:11]
        s_cpu, d_cpu = row[11:]
        tot_s, tot_d, tot_b = tot_s + s_secs, tot_d + d_secs, tot_b + b_secs
        tot_sc, tot_dc = tot_sc + s_cpu, tot_dc + d_cpu
        print(
            f"| {name} | {size / 1e6:,.0f} | {read:,} | {s_secs:.1f} | {s_rss:,.0f} | "
            f"{d_secs:.1f} | {d_rss:,.0f} | {s_secs / d_secs:.2f} | {s_cpu:.1f} / {d_cpu:.1f} | "
            f"{s_cpu / d_cpu:.2f} | {r_secs:.1f} | {b_secs:.1f} | {s_secs / b_secs:.2f} |"
        )
    print(
        f"| **all** | | | {tot_s:.1f} | | {tot_d:.1f} | | {tot_s / tot_d:.2f} | "
        f"{tot_sc:.1f} / {tot_dc:.1f} | {tot_sc / tot_dc:.2f} | | {tot_b:.1f} "
        f"| {tot_s / tot_b:.2f} |"
    )
    print()
    from segone.store.duckdb import DuckDBWarehouse

    with DuckDBWarehouse(db, read_only=True) as wh:
        for t in ("events", "orders", "order_lines", "customers", "interactions", "quarantine"):
            got, exp = wh.count(t), truth[t]
            print(f"{t}: {got:,} loaded, ground truth {exp:,} {'ok' if got == exp else 'DIFFERS'}")


if __name__ == "__main__":
    main()

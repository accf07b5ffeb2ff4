"""The same build on DuckDB and on Spark local: time and peak memory side by side.

For each size: generate the sample store (fixed seed, ``segone.demo.sample_project``, the
store the parity test uses), ingest it into DuckDB once, then run ``build`` (identity,
profiles, models) and one segment snapshot in a fresh process per engine: DuckDB on the
ingested file, Spark ``local[2]`` on a copy of the raw tables as Parquet. Each build stage is
timed, and the Spark/DuckDB ratio printed per stage. Peak memory is the largest sum
of resident memory over the build process and its children (Spark's JVM), sampled every 0.2 s.

    python bench/scale_bench.py --customers 100000 --workdir bench/out/scale
    python bench/scale_bench.py --customers 2000 --engines duckdb,spark --workdir /tmp/sb

Results are printed as a table and appended to ``<workdir>/scale.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RAW = [
    "events",
    "orders",
    "order_lines",
    "products",
    "customers",
    "interactions",
    "quarantine",
    "enrichments",
    "loads",
    "project_secrets",
]


def _tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants."""
    kids: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            statm = (entry / "statm").read_text().split()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry.name))
        rss[int(entry.name)] = int(statm[1]) * os.sysconf("SC_PAGE_SIZE")
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo += kids.get(p, [])
    return total


def run_measured(cmd: list[str]) -> tuple[float, int, str]:
    """Run ``cmd``; (seconds, peak tree RSS in bytes, its output)."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss(proc.pid))
            time.sleep(0.2)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, _ = proc.communicate()
    done.set()
    th.join()
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-4000:]}")
    return time.perf_counter() - t, peak, out


def prepare(workdir: Path, customers: int, seed: int) -> Path:
    """A project with the generated store ingested into DuckDB (reused when present)."""
    from segone.demo import sample_project

    root = workdir / f"p{customers}"
    if (root / "ready").exists():
        return root
    sample_project(root, customers=customers, seed=seed)
    (root / "ready").write_text("")
    return root


def child(engine: str, root: str, spark_dir: str) -> None:
    """One build and one segment snapshot in this process (the parent runs it as a
    subprocess); prints the seconds of each build stage as JSON."""
    import shutil

    from segone.demo import sample_as_of
    from segone.pipeline.backfill import backfill
    from segone.pipeline.build import build
    from segone.project import Project
    from segone.segments import project_catalogue
    from segone.store.duckdb import DuckDBWarehouse

    p = Project.open(root)
    as_of = sample_as_of()
    t = time.perf_counter()
    wh: Any
    if engine == "duckdb":
        work = Path(root) / "bench.duckdb"
        shutil.copy(Path(root) / "warehouse.duckdb", work)
        wh = DuckDBWarehouse(work, threads=2, memory_limit="4GB")
    else:
        from segone.store.copy import copy_tables
        from segone.store.spark import SparkWarehouse

        shutil.rmtree(spark_dir, ignore_errors=True)
        src = DuckDBWarehouse(Path(root) / "warehouse.duckdb", read_only=True)
        wh = SparkWarehouse(spark_dir, master="local[2]", driver_memory="3g")
        wh.ensure_tables()
        copy_tables(src, wh, [n for n in RAW if n in src.tables()])
        src.close()
    steps: dict[str, float] = {"engine start and raw tables in": time.perf_counter() - t}
    mark = [time.perf_counter(), ""]

    def progress(stage: str, _detail: str) -> None:
        now = time.perf_counter()
        if mark[1]:
            steps[str(mark[1])] = now - float(mark[0])
        mark[0], mark[1] = now, stage

    t = time.perf_counter()
    r = build(
        wh,
        as_of=as_of,
        identity=p.settings.identity,
        stages=p.settings.lifecycle,
        models=p.settings.models,
        progress=progress,
    )
    progress("", "")
    took = time.perf_counter() - t
    t = time.perf_counter()
    cat = project_catalogue(p, wh)
    backfill(wh, cat, as_of, as_of, 30, p.settings.lifecycle, models=p.settings.models)
    steps["segment snapshot"] = time.perf_counter() - t
    try:
        sizes = plan(wh, p, as_of)
    except Exception as exc:  # the sizes are an aid; never lose the timings for them
        sizes = {"error": str(exc)[:300]}  # type: ignore[dict-item]
    out = {"build_s": took, "steps": steps, "summary": r.summary(), "plan": sizes}
    wh.close()
    print(json.dumps(out))


def plan(wh: Any, p: Any, as_of: Any) -> dict[str, int]:
    """The sizes the stages move (rows), and on Spark the shuffles (exchanges) of the two
    widest queries: what the 100M-customer plan in docs/scale.md is extrapolated from."""
    import ibis

    from segone.identity.graph import record_identifiers
    from segone.pipeline.build import profiles_expr

    ids = record_identifiers(wh, p.settings.identity)
    sizes = {
        "identifier_rows": ids.count(),
        "records": ids.select("record_table", "record_key").distinct().count(),
        "nodes": wh.table("customer_map").count(),
        "customers": wh.table("profiles").count(),
        "matched_pairs": wh.table("identity_matches").count(),
        "customer_records": wh.table("customers").count(),
    }
    for name in ("events", "orders", "order_lines", "interactions"):
        sizes[name] = wh.table(name).count()
    out = {k: int(wh.execute(v)) for k, v in sizes.items()}
    if hasattr(wh, "_dataframe"):  # Spark: count the shuffles Catalyst plans
        cutoff = ibis.literal(as_of)
        for name, expr in (
            ("identifiers", ids),
            ("profiles", profiles_expr(wh, cutoff, stages=p.settings.lifecycle)),
        ):
            qe = wh._dataframe(expr)._jdf.queryExecution()
            out[f"exchanges_{name}"] = qe.executedPlan().toString().count("Exchange")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, nargs="+", default=[100_000])
    ap.add_argument("--engines", default="duckdb,spark")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workdir", type=Path, default=Path("bench/out/scale"))
    ap.add_argument("--child", nargs=3, metavar=("ENGINE", "ROOT", "SPARK_DIR"))
    a = ap.parse_args()
    if a.child:
        child(*a.child)
        return
    a.workdir.mkdir(parents=True, exist_ok=True)
    print(f"load average at start: {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)")
    for n in a.customers:
        t = time.perf_counter()
        root = prepare(a.workdir, n, a.seed)
        print(f"{n:,} customers: generated and ingested in {time.perf_counter() - t:.0f}s")
        got: dict[str, dict[str, Any]] = {}
        for engine in a.engines.split(","):
            load = os.getloadavg()[0]
            cmd = [sys.executable, __file__, "--child", engine, str(root), str(root / "spark")]
            secs, peak, out = run_measured(cmd)
            res = json.loads(out.strip().splitlines()[-1])
            row = {
                "customers": n,
                "engine": engine,
                "plan": res["plan"],
                "build_s": round(res["build_s"], 1),
                "steps_s": {k: round(v, 1) for k, v in res["steps"].items()},
                "process_s": round(secs, 1),
                "peak_rss_mb": round(peak / 2**20),
                "summary": res["summary"],
                "cpus": os.cpu_count(),
                "load_before": round(load, 1),
                "load_after": round(os.getloadavg()[0], 1),
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            got[engine] = row
            with (a.workdir / "scale.jsonl").open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(
                f"  {engine:<7} build {row['build_s']:>8.1f}s  process {row['process_s']:.1f}s  "
                f"peak RSS {row['peak_rss_mb']:,} MB  (load {load:.1f} -> "
                f"{row['load_after']:.1f})",
                flush=True,
            )
        engines = list(got)
        steps = list(dict.fromkeys(k for r in got.values() for k in r["steps_s"]))
        print(f"  {'step':<32}" + "".join(f"{e:>10}" for e in engines) + "   ratio")
        for k in steps:
            vals = [got[e]["steps_s"].get(k) for e in engines]
            ratio = f"{vals[-1] / vals[0]:8.1f}x" if len(vals) > 1 and vals[0] and vals[-1] else ""
            cells = "".join(f"{v:>10.1f}" if v is not None else f"{'-':>10}" for v in vals)
            print(f"  {k:<32}{cells}{ratio}")


if __name__ == "__main__":
    main()

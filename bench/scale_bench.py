"""The same build on DuckDB and on Spark local: time and peak memory side by side.

For each size: generate the sample store (fixed seed), ingest it into DuckDB once, then run
``build`` (identity, profiles, models) in a fresh process per engine: DuckDB on the ingested
file, Spark ``local[2]`` on a copy of the raw tables as Parquet. Peak memory is the largest sum
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
from datetime import UTC, datetime, timedelta
from pathlib import Path

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
    from segone.datasets import SAMPLE_FILES, generate_sample
    from segone.datasets.sample import SAMPLE_TOML
    from segone.identity.erase import project_salt
    from segone.ingest import ingest_file
    from segone.project import Project

    root = workdir / f"p{customers}"
    if (root / "ready").exists():
        return root
    p = Project.init(root, exist_ok=True)
    cfg = root / "segone.toml"
    cfg.write_text(cfg.read_text() + SAMPLE_TOML)
    p = Project.open(root)
    generate_sample(root / "sample", customers=customers, seed=seed)
    with p.warehouse() as wh:
        for kind, name in SAMPLE_FILES:
            ingest_file(
                wh,
                kind,
                root / "sample" / "data" / name,
                settings=p.settings.ingest,
                identity=p.settings.identity,
            )
        project_salt(wh)  # both engines derive the same customer ids
    (root / "ready").write_text("")
    return root


def child(engine: str, root: str, spark_dir: str) -> None:
    """One build in this process (run by the parent through a subprocess)."""
    from segone.datasets.sample import SampleConfig
    from segone.pipeline.build import build
    from segone.project import Project
    from segone.store.duckdb import DuckDBWarehouse

    p = Project.open(root)
    end = datetime.fromisoformat(SampleConfig().end).replace(tzinfo=UTC) + timedelta(days=1)
    as_of = end - timedelta(microseconds=1)
    t = time.perf_counter()
    if engine == "duckdb":
        import shutil

        work = Path(root) / "bench.duckdb"
        shutil.copy(Path(root) / "warehouse.duckdb", work)
        wh: object = DuckDBWarehouse(work, threads=2, memory_limit="4GB")
        setup = 0.0
    else:
        import shutil

        from segone.store.copy import copy_tables
        from segone.store.spark import SparkWarehouse, stop_spark

        shutil.rmtree(spark_dir, ignore_errors=True)
        src = DuckDBWarehouse(Path(root) / "warehouse.duckdb", read_only=True)
        wh = SparkWarehouse(spark_dir, master="local[2]", driver_memory="3g")
        wh.ensure_tables()  # type: ignore[attr-defined]
        copy_tables(src, wh, [n for n in RAW if n in src.tables()])  # type: ignore[arg-type]
        src.close()
        setup = time.perf_counter() - t
    t = time.perf_counter()
    r = build(
        wh,  # type: ignore[arg-type]
        as_of=as_of,
        identity=p.settings.identity,
        stages=p.settings.lifecycle,
        models=p.settings.models,
    )
    took = time.perf_counter() - t
    print(json.dumps({"setup_s": setup, "build_s": took, "summary": r.summary()}))
    wh.close()  # type: ignore[attr-defined]
    if engine == "spark":
        stop_spark()


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
    rows = []
    for n in a.customers:
        t = time.perf_counter()
        root = prepare(a.workdir, n, a.seed)
        print(f"{n:,} customers: generated and ingested in {time.perf_counter() - t:.0f}s")
        for engine in a.engines.split(","):
            cmd = [sys.executable, __file__, "--child", engine, str(root), str(root / "spark")]
            secs, peak, out = run_measured(cmd)
            got = json.loads(out.strip().splitlines()[-1])
            row = {
                "customers": n,
                "engine": engine,
                "build_s": round(got["build_s"], 1),
                "setup_s": round(got["setup_s"], 1),
                "process_s": round(secs, 1),
                "peak_rss_mb": round(peak / 2**20),
                "summary": got["summary"],
                "cpus": os.cpu_count(),
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            rows.append(row)
            with (a.workdir / "scale.jsonl").open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(
                f"  {engine:<7} build {row['build_s']:>8.1f}s  (copy to engine "
                f"{row['setup_s']:.1f}s, process {row['process_s']:.1f}s)  "
                f"peak RSS {row['peak_rss_mb']:,} MB",
                flush=True,
            )


if __name__ == "__main__":
    main()

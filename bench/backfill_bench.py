"""Backfill of weekly segment snapshots (memberships, transitions, lifecycle moves).

    python bench/backfill_bench.py --customers 100000 --weeks 52 --workdir bench/out/backfill

Generates a store (or reuses the one in --workdir), ingests it, resolves identity once, then
records --weeks weekly as-of snapshots ending at the end of the generated period, exactly as
``segone segments backfill --every 7`` does. Prints time per phase, the sizes of the history
tables and the lifecycle transition matrix. The baseline in the same run is one full
``segone build`` (identity + profiles) of the same warehouse: a snapshot rebuilds every profile,
so "seconds per snapshot / seconds per build" is the figure that should hold across machines.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from segone.config import CONFIG_FILE
from segone.datasets import SAMPLE_FILES, generate_sample
from segone.datasets.sample import SAMPLE_TOML, SampleConfig
from segone.ingest import ingest_file
from segone.pipeline.backfill import backfill
from segone.pipeline.build import build
from segone.project import Project
from segone.segments import project_catalogue
from segone.segments.history import transition_matrix


def prepare(root: Path, customers: int, seed: int) -> Project:
    ready = root / "ready"
    project = Project.init(root, exist_ok=True)
    if ready.exists():
        return Project.open(root)
    cfg = root / CONFIG_FILE
    cfg.write_text(cfg.read_text() + SAMPLE_TOML)
    project = Project.open(root)
    t = time.perf_counter()
    generate_sample(root / "sample", customers=customers, seed=seed)
    for kind, name in SAMPLE_FILES:
        with project.warehouse() as wh:
            ingest_file(
                wh,
                kind,
                root / "sample" / "data" / name,
                settings=project.settings.ingest,
                identity=project.settings.identity,
            )
    print(f"generated and ingested {customers:,} people in {time.perf_counter() - t:.0f}s")
    ready.touch()
    return project


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--weeks", type=int, default=52)
    ap.add_argument("--workdir", type=Path, default=Path("bench/out/backfill"))
    a = ap.parse_args()
    project = prepare(a.workdir, a.customers, a.seed)
    end = datetime.fromisoformat(SampleConfig().end).replace(tzinfo=UTC) + timedelta(days=1)
    last = end - timedelta(microseconds=1)
    with project.warehouse() as wh:
        for t in ("segment_memberships", "transitions", "segment_snapshots"):
            wh.replace(t, wh.table(t).limit(0))  # a fresh history each run
        t = time.perf_counter()
        build(
            wh,
            as_of=last,
            identity=project.settings.identity,
            stages=project.settings.lifecycle,
        )
        t_build = time.perf_counter() - t
        cat = project_catalogue(project, wh)
        times: list[float] = []
        tick = [time.perf_counter()]

        def progress(i: int, n: int, d: datetime) -> None:
            now = time.perf_counter()
            if i:
                times.append(now - tick[0])
            tick[0] = now

        t = time.perf_counter()
        start = last - timedelta(weeks=a.weeks - 1)
        res = backfill(wh, cat, start, last, 7, project.settings.lifecycle, progress=progress)
        total = time.perf_counter() - t
        times.append(time.perf_counter() - tick[0])
        matrix = wh.execute(transition_matrix(wh))
        sizes = {
            n: wh.count(n) for n in ("segment_memberships", "transitions", "segment_snapshots")
        }
    times.sort()
    med = times[len(times) // 2]
    print(
        f"\n{a.customers:,} generated people (seed {a.seed}), {len(cat.segments)} segments "
        f"+ lifecycle stages, {len(res)} weekly snapshots\n"
    )
    print("| step | seconds | ratio to one build |\n|---|---:|---:|")
    print(f"| one build (identity + profiles), baseline | {t_build:.1f} | 1.00 |")
    print(f"| one snapshot (median) | {med:.1f} | {med / t_build:.2f} |")
    print(f"| slowest snapshot | {times[-1]:.1f} | {times[-1] / t_build:.2f} |")
    print(f"| whole backfill ({len(res)} snapshots) | {total:.0f} | {total / t_build:.1f} |")
    print("\n" + ", ".join(f"{k}: {v:,}" for k, v in sizes.items()))
    print("\nlifecycle moves (from -> to):")
    print(matrix.sort_values(["from_stage", "to_stage"]).to_string(index=False))


if __name__ == "__main__":
    main()

"""How fast the ``segone`` command starts: median wall time of ``segone --help`` and
``segone --version`` (10 runs each, in fresh processes), against a bare ``python -c pass``;
then a few commands on a fresh project (``segone init`` in a temporary directory): ``status``
(opens the warehouse), ``config show`` (reads the settings through pydantic-settings) and
``keys list`` (settings only).

    PYTHONPATH=. python bench/cli_bench.py [--runs 10] [--ref REF_CHECKOUT]

``--ref`` times another checkout of segone the same way (e.g. the commit before the lazy
imports), so both figures come from one run on one machine. Issue 20 asks for < 300 ms.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(args: list[str], root: Path, runs: int) -> tuple[float, float]:
    """Median wall and CPU (user + system) seconds of ``runs`` runs of ``args`` started in
    ``root`` (``python -c`` puts the working directory first on the path). CPU time is the
    steadier figure on a shared machine: it does not count the waits for a core."""
    env = {**os.environ, "PYTHONPATH": str(root), "NO_COLOR": "1"}
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        subprocess.run(args, env=env, cwd=root, check=False, capture_output=True)
        walls.append(time.perf_counter() - t)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--ref", type=Path, help="another segone checkout to time the same way")
    a = ap.parse_args()
    cli = [sys.executable, "-c", "from segone.cli import main; main()"]
    roots = [("this tree", ROOT)] + ([("ref", a.ref)] if a.ref else [])
    print(f"medians of {a.runs} runs             wall ms   cpu ms")
    wall, cpu = timed([sys.executable, "-c", "pass"], ROOT, a.runs)
    print(f"python -c pass                   {wall * 1000:7.0f}  {cpu * 1000:7.0f}")
    for label, root in roots:
        for arg in ("--help", "--version"):
            wall, cpu = timed([*cli, arg], root, a.runs)
            print(f"segone {arg:<10} ({label:<9}) {wall * 1000:7.0f}  {cpu * 1000:7.0f}")
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "p"
        subprocess.run(
            [*cli, "init", str(project)],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            check=True,
            capture_output=True,
        )
        for command in (["status", "--json"], ["config", "show", "--json"], ["keys", "list"]):
            wall, cpu = timed([*cli, *command, "-p", str(project)], ROOT, a.runs)
            name = " ".join(command)
            print(f"segone {name:<24} {wall * 1000:7.0f}  {cpu * 1000:7.0f}")


if __name__ == "__main__":
    main()

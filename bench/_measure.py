"""Run one benchmark step in its own process: wall time, peak RSS and what it printed."""

from __future__ import annotations

import os
import subprocess
import time


def run_measured(args: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MiB) and stdout of one child process; fails loudly if it fails."""
    secs, rss, out, _ = run_measured_cpu(args)
    return secs, rss, out


def run_measured_cpu(args: list[str]) -> tuple[float, float, str, float]:
    """:func:`run_measured` and the child's CPU seconds (user + system, all its threads): on a
    shared machine the CPU a step used says more than the wall time it waited through."""
    t = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.stdout.close()
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"benchmark step failed: {' '.join(args[:3])}")
    cpu = usage.ru_utime + usage.ru_stime
    return time.perf_counter() - t, usage.ru_maxrss / 1024, out.strip(), cpu

"""``POST /v1/decide`` through ``segone serve`` on a built project: p50/p99 at a fixed rate,
and the server's CPU per call.

    python bench/decide_serve_bench.py PROJECT [--rate 200] [--seconds 20] [--candidates 500]

PROJECT is a built project whose build published to its online store, e.g. the demo:
``segone demo DIR --customers 20000 --no-serve``. ``segone serve`` runs on it as its own process
(the real server: its online store, the dashboard mounted, uvicorn); this process is the load
generator (``serve_bench.open_loop``: keep-alive connections, open loop, each latency measured
from the request's scheduled time so a stall counts against every request it delays).

Phases, each ``--seconds`` long at ``--rate`` requests/s, for random buyers of the build:

* ``list``: ``--candidates`` item ids of the catalogue (a random sample per request) as the
  request's candidates, the shape a shop's page sends;
* ``catalogue``: no candidates (the server ranks the catalogue).

The server's CPU per call is its process's user + system time over the phase (``/proc``)
divided by the requests answered. The load average is printed with the figures: the machine
may be shared.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from serve_bench import HOST, Conn, free_port, http_post, pct, wait_up  # noqa: E402

TOKEN = "dec_decide_serve_bench"


async def open_loop(
    port: int, make: Callable[[], bytes], rate: float, seconds: float
) -> tuple[list[float], int]:
    """Latencies (ms, from each request's scheduled time) at ``rate`` requests/s, and errors
    (``serve_bench.open_loop``, and a connection the server closed while idle is reopened)."""
    idle: list[Conn] = [await Conn.open(port) for _ in range(8)]
    latencies: list[float] = []
    errors = 0
    n = int(rate * seconds)
    start = time.perf_counter() + 0.05

    async def one(i: int) -> None:
        nonlocal errors
        scheduled = start + i / rate
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        data = make()
        conn = idle.pop() if idle else await Conn.open(port)
        try:
            status = await conn.request(data)
        except (asyncio.IncompleteReadError, ConnectionError):  # closed while idle
            conn.close()
            conn = await Conn.open(port)
            status = await conn.request(data)
        latencies.append((time.perf_counter() - scheduled) * 1000)
        idle.append(conn)
        if status != 200:
            errors += 1

    await asyncio.gather(*(one(i) for i in range(n)))
    for c in idle:
        c.close()
    return latencies, errors


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def people_and_items(project: Path, n_people: int) -> tuple[list[str], list[str]]:
    """An identifier of each buyer of the build (``kind:value``, as a shop would send it) and
    every catalogue item id."""
    from segone.project import Project

    with Project.open(project).warehouse(read_only=True) as wh:
        p = wh.table("profiles")
        cm = wh.table("customer_map")
        buyers = p.filter(p.orders > 0).select("customer_id")
        ids = cm.join(buyers, "customer_id").select("customer_id", "node")
        nodes = wh.execute(ids).groupby("customer_id").node.min().tolist()
        items = wh.execute(wh.table("products").select("product_id").distinct()).product_id
    rng = random.Random(7)
    return rng.sample(nodes, min(n_people, len(nodes))), sorted(items.astype(str).tolist())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("project", type=Path)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--candidates", type=int, default=500)
    ap.add_argument("--people", type=int, default=2000)
    args = ap.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    people, items = people_and_items(args.project, args.people)
    k = min(args.candidates, len(items))
    rng = random.Random(11)
    port = free_port()
    log = args.project / "decide_serve_bench.log"
    env = {**os.environ, "SEGONE_DECIDE_TOKENS": TOKEN}
    cmd = [sys.executable, "-c", "from segone.cli import main; main()", "serve"]
    cmd += ["-p", str(args.project), "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log.open("wb"), env=env)
    auth = f"Bearer {TOKEN}"

    def listed() -> bytes:
        body = {
            "identifier": rng.choice(people),
            "placement": "home",
            "limit": 5,
            "candidates": rng.sample(items, k),
        }
        return http_post("/v1/decide", orjson.dumps(body), auth)

    def catalogue() -> bytes:
        body = {"identifier": rng.choice(people), "placement": "home", "limit": 5}
        return http_post("/v1/decide", orjson.dumps(body), auth)

    rows = []
    try:
        wait_up(port, proc, log, timeout=600, poll=0.2)  # a shared machine is slow
        # one request of each kind first: the server reads the catalogue on first use
        for make in (listed, catalogue):
            body = make().partition(b"\r\n\r\n")[2]
            r = httpx.post(
                f"http://{HOST}:{port}/v1/decide",
                content=body,
                headers={"Authorization": auth, "Content-Type": "application/json"},
                timeout=60,
            )
            if r.status_code != 200:
                raise SystemExit(f"/v1/decide answered {r.status_code}: {r.text[:500]}")
        gc.collect()
        gc.freeze()
        for name, make in ((f"list of {k}", listed), ("catalogue", catalogue)):
            # a short warm-up at the rate, then the measured phase
            asyncio.run(open_loop(port, make, args.rate, min(3.0, args.seconds)))
            c0 = cpu_seconds(proc.pid)
            lat, errors = asyncio.run(open_loop(port, make, args.rate, args.seconds))
            cpu = cpu_seconds(proc.pid) - c0
            rows.append((name, pct(lat, 50), pct(lat, 99), cpu / len(lat) * 1e3, errors, len(lat)))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    load = os.getloadavg()
    print(
        f"\ndecide_serve_bench: {args.project} ({len(items)} items), {args.rate:.0f} req/s open "
        f"loop, {args.seconds:.0f} s per phase, {os.cpu_count()} cores, load average "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the end"
    )
    print(f"{'candidates':<14} {'p50 ms':>8} {'p99 ms':>8} {'server cpu ms/call':>19} errors")
    for name, p50, p99, cpu, err, n in rows:
        print(f"{name:<14} {p50:>8.2f} {p99:>8.2f} {cpu:>19.2f} {err}/{n}")


if __name__ == "__main__":
    t = time.perf_counter()
    main()
    print(f"({time.perf_counter() - t:.0f} s)")

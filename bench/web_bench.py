"""Dashboard speed: server time per page (p50/p95) and customer search, on a generated store.

    python bench/web_bench.py --customers 100000 --workdir bench/out/web

Builds the project once (kept in --workdir; delete it to rebuild), serves it with ``segone
serve`` and times requests from this process (the time includes one local HTTP round trip).
The first request of each page is reported apart: the pages are computed once per build of the
warehouse and then answered from memory, so a first visit after a build costs what a query
costs, and the later ones what rendering costs. Search is never cached.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.web_support import ADMIN, PAGES, make_project, serve


def p95(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(0.95 * (len(xs) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--workdir", type=Path, default=Path("bench/out/web"))
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    root = args.workdir / f"demo-{args.customers}"
    if not (root / "warehouse.duckdb").exists():
        t = time.perf_counter()
        make_project(root, customers=args.customers)
        print(f"built the project in {time.perf_counter() - t:.0f} s")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    import duckdb

    con = duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)
    emails = [
        r[0].split(":", 1)[1]
        for r in con.execute(
            "SELECT node FROM customer_map WHERE id_type = 'email' ORDER BY hash(node) LIMIT 40"
        ).fetchall()
    ]
    phones = [
        r[0].split(":", 1)[1]
        for r in con.execute(
            "SELECT node FROM customer_map WHERE id_type = 'phone' ORDER BY hash(node) LIMIT 20"
        ).fetchall()
    ]
    cids = [
        r[0]
        for r in con.execute(
            "SELECT customer_id FROM profiles ORDER BY hash(customer_id) LIMIT 20"
        ).fetchall()
    ]
    con.close()
    with (
        serve(root, args.workdir / "serve.log") as url,
        httpx.Client(base_url=url, timeout=300) as http,
    ):
        page = http.get("/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf
        r = http.post("/login", data={"csrf": csrf.group(1), "token": ADMIN, "next": "/"})
        assert r.status_code == 303, r.text

        def timed(path: str) -> float:
            t = time.perf_counter()
            r = http.get(path)
            dt = time.perf_counter() - t
            if r.status_code != 200:
                raise SystemExit(f"{path}: {r.status_code} {r.text[:300]}")
            return dt * 1000

        print(f"{'page':<34}{'first ms':>10}{'p50 ms':>10}{'p95 ms':>10}")
        for name, path in [*PAGES, ("segment vip", "/segments/vip")]:
            first = timed(path)
            xs = [timed(path) for _ in range(args.repeats)]
            print(f"{name:<34}{first:>10.0f}{statistics.median(xs):>10.0f}{p95(xs):>10.0f}")
        for label, queries in (
            ("search by e-mail (fragment)", emails),
            ("search by phone (fragment)", phones),
            ("search by name (fragment)", ["smith", "john", "mar", "lee", "ann"] * 4),
            ("customer 360 (first visit)", [f"/customers/{c}" for c in cids]),
        ):
            if label.startswith("customer"):
                xs = [timed(q) for q in queries]
            else:
                xs = [
                    timed(f"/customers/search?q={httpx.QueryParams({'q': q})['q']}")
                    for q in queries
                ]
            print(f"{label:<34}{'':>10}{statistics.median(xs):>10.0f}{p95(xs):>10.0f}")


if __name__ == "__main__":
    main()

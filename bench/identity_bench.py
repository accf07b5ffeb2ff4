"""Identity and profile build benchmark: segone's in-warehouse graph against networkx.

    python bench/identity_bench.py WAREHOUSE.duckdb [--truth SAMPLE/truth]

Takes a warehouse that already holds ingested data (e.g. the one bench/ingest_bench.py leaves in
its work directory), copies it, and measures, each in its own process (wall time, peak RSS):
  * one scan: reading every identifier of every record (the input of the graph), as the unit;
  * segone: deterministic identity resolution (label propagation in DuckDB);
  * with --probabilistic: resolution as `segone build` does it, with Splink matching and the
    household guard (the truth, when given, is then scored on this one);
  * segone: the profile build on top of it;
  * baseline: networkx.connected_components on the same edges, exported once to Parquet.
Checks that both find the same number of components, and scores identity against the ground
truth when --truth is given: people split and customers mixed, and, when the truth marks which
records are linkable in principle, the people split among their linkable records.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _measure import run_measured

SCAN = """
import sys, time
from segone.identity.graph import IdentitySettings, record_identifiers
from segone.store.duckdb import DuckDBWarehouse
with DuckDBWarehouse(sys.argv[1], memory_limit="8GB") as wh:
    ids = record_identifiers(wh, IdentitySettings())
    print(int(wh.execute(ids.count())), int(wh.execute(ids.node.nunique())))
"""

RESOLVE = """
import sys
from segone.identity import IdentitySettings, resolve
from segone.store.duckdb import DuckDBWarehouse
with DuckDBWarehouse(sys.argv[1], memory_limit="8GB") as wh:
    r = resolve(wh, IdentitySettings(probabilistic=sys.argv[2] == "1"))
    print(r.customers, r.nodes, r.rounds, r.probabilistic_pairs)
"""

PROFILES = """
import sys
from datetime import datetime, UTC
import ibis
from segone.pipeline.build import profiles_expr
from segone.profiles.sentiment import score_interactions
from segone.schema import TS
from segone.store.duckdb import DuckDBWarehouse
with DuckDBWarehouse(sys.argv[1], memory_limit="8GB") as wh:
    score_interactions(wh)
    as_of = ibis.literal(datetime(2025, 1, 1, tzinfo=UTC), type=TS)
    wh.replace("profiles", profiles_expr(wh, as_of))
    print(wh.count("profiles"))
"""

EXPORT = """
import sys
from segone.identity.graph import IdentitySettings, record_identifiers, refusals
from segone.store.duckdb import DuckDBWarehouse
with DuckDBWarehouse(sys.argv[1], memory_limit="8GB") as wh:
    ids = wh.materialize("_ids", record_identifiers(wh, IdentitySettings()))
    allowed = ids.anti_join(refusals(ids, IdentitySettings()), "node")
    rec = ["record_table", "record_key"]
    root = allowed.group_by(rec).agg(root=allowed.node.min())
    star = allowed.join(root, rec)
    edges = star.filter(star.node != star.root).select(src=star.root, dst=star.node).distinct()
    wh.backend.to_parquet(edges, sys.argv[2])
    wh.backend.to_parquet(allowed.select("node").distinct(), sys.argv[3])
"""

NETWORKX = """
import sys
import networkx as nx
import pyarrow.parquet as pq
e = pq.read_table(sys.argv[1])
n = pq.read_table(sys.argv[2])
g = nx.Graph()
g.add_nodes_from(n.column("node").to_pylist())
g.add_edges_from(zip(e.column("src").to_pylist(), e.column("dst").to_pylist()))
print(nx.number_connected_components(g), g.number_of_nodes(), g.number_of_edges())
"""


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("warehouse", type=Path)
    ap.add_argument("--truth", type=Path)
    ap.add_argument(
        "--probabilistic",
        action="store_true",
        help="also time resolve with probabilistic matching (the build's default); the truth is "
        "then scored on that resolve",
    )
    ap.add_argument("--workdir", type=Path, default=Path("bench/out/identity"))
    a = ap.parse_args()
    a.workdir.mkdir(parents=True, exist_ok=True)
    db = a.workdir / "identity.duckdb"
    shutil.copy(a.warehouse, db)
    py = sys.executable
    rows = []
    secs, rss, out = run_measured([py, "-c", SCAN, str(db)])
    n_ids, n_nodes = map(int, out.split())
    rows.append(
        ("one scan of the identifiers", secs, rss, f"{n_ids:,} identifier rows, {n_nodes:,} nodes")
    )
    secs, rss, out = run_measured([py, "-c", RESOLVE, str(db), "0"])
    customers, _nodes, rounds, _ = map(int, out.strip().splitlines()[-1].split())
    rows.append(("segone identity build", secs, rss, f"{customers:,} customers, {rounds} rounds"))
    secs, rss, out = run_measured([py, "-c", PROFILES, str(db)])
    rows.append(("segone profile build", secs, rss, f"{int(out):,} profiles"))
    edges, nodefile = a.workdir / "edges.parquet", a.workdir / "nodes.parquet"
    secs, rss, _ = run_measured([py, "-c", EXPORT, str(db), str(edges), str(nodefile)])
    rows.append(("(export edges for networkx, not timed against)", secs, rss, ""))
    secs, rss, out = run_measured([py, "-c", NETWORKX, str(edges), str(nodefile)])
    comps, nx_nodes, nx_edges = map(int, out.split())
    rows.append(
        (
            "networkx connected_components (load + solve)",
            secs,
            rss,
            f"{comps:,} components, {nx_nodes:,} nodes, {nx_edges:,} edges",
        )
    )
    print("| step | seconds | peak MiB | result |\n|---|---:|---:|---|")
    for name, s, r, note in rows:
        print(f"| {name} | {s:.1f} | {r:,.0f} | {note} |")
    scan = rows[0][1]
    print(
        f"\nidentity build = {rows[1][1] / scan:.1f} x one scan; "
        f"networkx = {rows[4][1] / scan:.1f} x; "
        f"segone/networkx time = {rows[1][1] / rows[4][1]:.2f}; same component count: "
        f"{'yes' if comps == customers else f'NO ({comps} vs {customers})'}"
    )
    if a.probabilistic:
        secs, rss, out = run_measured([py, "-c", RESOLVE, str(db), "1"])
        # the last line: DuckDB may draw a progress bar on stdout during the long queries
        customers, _nodes, rounds, matched = map(int, out.strip().splitlines()[-1].split())
        print(
            f"| segone identity build + probabilistic matching (as `segone build`) | {secs:.1f} "
            f"| {rss:,.0f} | {customers:,} customers, {rounds} rounds, {matched:,} matched "
            f"pairs kept by the household guard |\n\nwith matching = {secs / scan:.1f} x one scan"
        )
    if a.truth:
        from segone.datasets.truth import identity_scores
        from segone.store.duckdb import DuckDBWarehouse

        with DuckDBWarehouse(db) as wh:
            scores = identity_scores(wh, a.truth)
        print(json.dumps(scores, indent=1))
        if "linkable_split_rate" in scores:
            print(
                f"people split over several ids: {scores['split_rate']:.2%} of all people; "
                f"{scores['linkable_split_rate']:.2%} of the people whose records can be linked "
                f"in principle (a linkable group spread over several ids); "
                f"{scores['split_by_design_rate']:.2%} hold records no resolver could join; "
                f"customers mixing two people: {scores['mixed_rate']:.2%}"
            )


if __name__ == "__main__":
    main()

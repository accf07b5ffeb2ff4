"""Campaign benchmarks: an audience at scale, and the ladder on a generated store.

python bench/campaign_bench.py audience --customers 1000000
    N synthetic people (profiles, e-mail/phone/user ids, opt-outs, suppressions, erasures,
    past contacts) in a DuckDB file; times one full read of the profiles table, then the
    audience build (every step counted), the holdout assignment and the hashed export, and
    prints the ratio to the scan. The identifiers' salted hashes that `segone build` keeps for
    the erasure check are computed first and timed apart (build_identifier_hashes_s).

python bench/campaign_bench.py ladder --project demo-project
    The ladder (segone campaign ladder) on a project made by `segone demo`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import ibis
import numpy as np
import pyarrow as pa

from segone.campaigns.audiences import AudienceSpec, Caps, build_audience, export_audience
from segone.campaigns.holdouts import assign
from segone.campaigns.measure import ensure_tables, record_exposures
from segone.identity.erase import refresh_identifier_hashes
from segone.store.duckdb import DuckDBWarehouse

NOW = datetime(2025, 1, 10, tzinfo=UTC)


def fill(wh: DuckDBWarehouse, n: int, seed: int = 0) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    ids = np.char.add("cus_", np.arange(n).astype(str)).astype(object)
    consent = rng.random(n)
    profiles = pa.table(
        {
            "customer_id": ids,
            "first_name": np.char.add("N", (np.arange(n) % 997).astype(str)).astype(object),
            "consent_email": pa.array(consent < 0.6),
            "consent_sms": pa.array(rng.random(n) < 0.5),
            "churn_probability": rng.random(n),
            "clv": rng.gamma(2.0, 100.0, n),
            "orders": rng.integers(0, 8, n),
            "revenue": rng.gamma(2.0, 80.0, n),
            "recency_days": rng.integers(0, 700, n),
            "top_category": np.array(["Home", "Books", "Sports", "Beauty"], dtype=object)[
                rng.integers(0, 4, n)
            ],
            "city": np.char.add("City", (np.arange(n) % 300).astype(str)).astype(object),
        }
    )
    wh.replace("profiles", ibis.memtable(profiles))
    has_email = rng.random(n) < 0.85
    has_phone = rng.random(n) < 0.6
    e_ids = ids[has_email]
    p_ids = ids[has_phone]
    nodes = np.concatenate(
        [
            np.char.add(np.char.add("email:p", np.flatnonzero(has_email).astype(str)), "@x.com"),
            np.char.add("phone:+1555", np.flatnonzero(has_phone).astype(str)),
            np.char.add("user_id:u", np.arange(n).astype(str)),
        ]
    ).astype(object)
    types = np.repeat(
        np.array(["email", "phone", "user_id"], dtype=object), [len(e_ids), len(p_ids), n]
    )
    cids = np.concatenate([e_ids, p_ids, ids])
    ts = pa.array([NOW - timedelta(days=3)] * len(nodes), pa.timestamp("us", tz="UTC"))
    wh.insert(
        "customer_map",
        ibis.memtable(
            pa.table(
                {
                    "node": nodes,
                    "id_type": types,
                    "customer_id": cids,
                    "first_seen": ts,
                    "last_seen": ts,
                }
            )
        ),
    )
    k = max(n // 100, 1)
    opted = ids[rng.choice(n, k, replace=False)]
    mids = np.char.add("m", np.arange(k).astype(str)).astype(object)
    wh.insert(
        "events",
        ibis.memtable(
            pa.table(
                {
                    "message_id": mids,
                    "type": ["track"] * k,
                    "event": ["Email Unsubscribed"] * k,
                    "timestamp": pa.array(
                        [NOW - timedelta(days=9)] * k, pa.timestamp("us", tz="UTC")
                    ),
                }
            )
        ),
    )
    wh.insert(
        "record_customers",
        ibis.memtable(
            pa.table({"record_table": ["events"] * k, "record_key": mids, "customer_id": opted})
        ),
    )
    ensure_tables(wh)
    contacted = ids[rng.choice(n, k * 5, replace=False)]
    for j in range(2):
        record_exposures(
            wh,
            campaign="old",
            run_id=f"r{j}",
            channel="email",
            at=NOW - timedelta(days=1 + j),
            rows=[(str(c), "a", True, None) for c in contacted[: k * (5 - 2 * j)]],
        )
    supp = {f"user_id:u{i}": {"channels": "*"} for i in rng.choice(n, k, replace=False)}
    # erasures asked through the API since the last build: every identifier gets hashed
    from segone.identity.erase import erasure_salts
    from segone.identity.traces import hash_node

    salt = erasure_salts(wh)[0]
    erased = [hash_node(salt, f"user_id:u{i}") for i in rng.choice(n, k, replace=False)]
    return {"suppressions": supp, "online_erased": erased}


def bench_audience(n: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as d:
        wh = DuckDBWarehouse(Path(d) / "w.duckdb", threads=2)
        wh.ensure_tables()
        t = time.perf_counter()
        extra = fill(wh, n)
        t_fill = time.perf_counter() - t
        # what `segone build` does after identity resolution (the bench writes customer_map
        # itself): the identifiers' salted hashes the erasure check joins on
        t = time.perf_counter()
        refresh_identifier_hashes(wh)
        t_hashes = time.perf_counter() - t
        wh.checkpoint()
        t = time.perf_counter()
        scanned = wh.to_arrow(wh.table("profiles")).num_rows
        t_scan = time.perf_counter() - t
        t = time.perf_counter()
        aud = build_audience(
            wh,
            AudienceSpec(rule={"churn_probability": {"gt": 0.3}}, top={"clv": 0.5}),
            "email",
            as_of=NOW,
            suppressions=extra["suppressions"],  # type: ignore[arg-type]
            online_erased=extra["online_erased"],  # type: ignore[arg-type]
            caps=Caps(2, 7),
            fields=["first_name"],
        )
        t_aud = time.perf_counter() - t
        t = time.perf_counter()
        ids = wh.execute(aud.reachable.select("customer_id")).customer_id.tolist()
        a = assign(ids, salt="campaign:bench", holdout=0.1, arms={"a": 1.0})
        held = [c for c, g in zip(ids, a.group, strict=True) if g != "treatment"]
        ex = wh.stage(
            "_bench_held", pa.table({"customer_id": pa.array(held, pa.string())}), append=False
        )
        t_hold = time.perf_counter() - t
        t = time.perf_counter()
        rows = export_audience(
            wh, aud, Path(d) / "out.parquet", columns=["first_name"], hashed=True, exclude=ex
        )
        t_exp = time.perf_counter() - t
        wh.close()
    total = t_aud + t_hold + t_exp
    return {
        "customers": n,
        "profiles_scanned": scanned,
        "fill_s": round(t_fill, 2),
        "build_identifier_hashes_s": round(t_hashes, 2),
        "scan_s": round(t_scan, 3),
        "audience_s": round(t_aud, 3),
        "holdout_s": round(t_hold, 3),
        "export_hashed_s": round(t_exp, 3),
        "total_s": round(total, 3),
        "ratio_to_scan": round(total / t_scan, 2),
        "steps": {s.key: s.count for s in aud.steps},
        "exported": rows,
    }


def bench_ladder(project: Path, window_days: int, seed: int) -> dict[str, object]:
    from segone.campaigns.simulate import run_ladder
    from segone.project import Project

    proj = Project.open(project)
    t = time.perf_counter()
    res = run_ladder(
        proj, truth_dir=proj.root / "sample" / "truth", window_days=window_days, seed=seed
    )
    res["seconds"] = round(time.perf_counter() - t, 1)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    a = sub.add_parser("audience")
    a.add_argument("--customers", type=int, default=1_000_000)
    lad = sub.add_parser("ladder")
    lad.add_argument("--project", type=Path, required=True)
    lad.add_argument("--window-days", type=int, default=30)
    lad.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.what == "audience":
        out = bench_audience(args.customers)
    else:
        out = bench_ladder(args.project, args.window_days, args.seed)
    print(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()

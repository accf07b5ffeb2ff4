"""Segment rules benchmark: 50 rules over every profile, segone (Ibis on DuckDB) against pandas.

    python bench/rules_bench.py WAREHOUSE.duckdb [--rules 50]

Takes a warehouse with built profiles (e.g. the identity benchmark's copy), generates ``--rules``
random rules (seeded) over numeric, true/false, text and list attributes, and counts every
rule's members: segone compiles each rule to one SQL expression and evaluates all of them in
the warehouse; the baseline loads the profiles into a pandas DataFrame and evaluates the same
rules with vectorised pandas. Each side runs in its own process (wall time, peak RSS) and the
member counts must agree.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _measure import run_measured

MAKE_RULES = """
import json, random

def rules(n, seed=0):
    rnd = random.Random(seed)
    nums = {"orders": (0, 20), "revenue": (0, 3000), "page_views": (0, 40),
            "recency_days": (0, 700), "avg_sentiment": (-1, 1), "email_open_rate": (0, 1),
            "tenure_days": (0, 800)}
    def leaf():
        k = rnd.random()
        if k < 0.6:
            a = rnd.choice(sorted(nums)); lo, hi = nums[a]
            return {a: {rnd.choice(["gt", "gte", "lt", "lte"]): round(rnd.uniform(lo, hi), 2)}}
        if k < 0.75:
            return {"social_follower": rnd.random() < 0.5}
        if k < 0.9:
            chan = rnd.choice(["web", "email", "store", "social", "loyalty"])
            return {"channels": {"contains": chan}}
        return {"crm_stage": {"in": rnd.sample(["lead", "opportunity", "customer"], 2)}}
    out = []
    for i in range(n):
        items = [leaf() for _ in range(rnd.randint(2, 4))]
        r = {"all": items} if rnd.random() < 0.6 else {"any": items}
        if rnd.random() < 0.2:
            r = {"not": r}
        out.append(r)
    return out
"""

SEGONE = (
    MAKE_RULES
    + """
import sys
from segone.segments import rule_from_obj, profile_attributes
from segone.segments.rules import compile_rule
from segone.store.duckdb import DuckDBWarehouse
with DuckDBWarehouse(sys.argv[1], read_only=True, memory_limit="8GB") as wh:
    attrs = profile_attributes(wh)
    p = wh.table("profiles")
    exprs = {f"r{i}": compile_rule(rule_from_obj(r, attrs), p).cast("int64").sum()
             for i, r in enumerate(rules(int(sys.argv[2])))}
    counts = wh.to_arrow(p.aggregate(**exprs)).to_pylist()[0]
print(json.dumps([int(counts[f"r{i}"]) for i in range(len(counts))]))
"""
)

PANDAS = (
    MAKE_RULES
    + """
import sys
import numpy as np
import pandas as pd
import duckdb
cols = ["orders", "revenue", "page_views", "recency_days", "avg_sentiment", "email_open_rate",
        "tenure_days", "social_follower", "channels", "crm_stage"]
con = duckdb.connect(sys.argv[1], read_only=True)
df = con.execute(f"select {', '.join(cols)} from profiles").df()
con.close()
def mask(r):
    (k, v), = r.items()
    if k == "all":
        return np.logical_and.reduce([mask(x) for x in v])
    if k == "any":
        return np.logical_or.reduce([mask(x) for x in v])
    if k == "not":
        return ~mask(v)
    col = df[k]
    if isinstance(v, dict):
        (op, val), = v.items()
    else:
        op, val = "eq", v
    if op == "contains":
        return col.map(lambda xs: xs is not None and val in list(xs)).to_numpy(bool)
    if op == "in":
        return col.isin(val).to_numpy(bool)
    ok = col.notna()
    res = {"eq": col == val, "gt": col > val, "gte": col >= val, "lt": col < val,
           "lte": col <= val}[op]
    return (ok & res.fillna(False).astype(bool)).to_numpy(bool)
print(json.dumps([int(mask(r).sum()) for r in rules(int(sys.argv[2]))]))
"""
)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("warehouse", type=Path)
    ap.add_argument("--rules", type=int, default=50)
    a = ap.parse_args()
    py = sys.executable
    s_secs, s_rss, s_out = run_measured([py, "-c", SEGONE, str(a.warehouse), str(a.rules)])
    p_secs, p_rss, p_out = run_measured([py, "-c", PANDAS, str(a.warehouse), str(a.rules)])
    seg, pdx = json.loads(s_out), json.loads(p_out)
    print("| engine | seconds | peak MiB |\n|---|---:|---:|")
    print(f"| segone (Ibis on DuckDB) | {s_secs:.1f} | {s_rss:,.0f} |")
    print(f"| pandas (load + evaluate) | {p_secs:.1f} | {p_rss:,.0f} |")
    agree = sum(x == y for x, y in zip(seg, pdx, strict=True))
    print(
        f"\ntime ratio segone/pandas = {s_secs / p_secs:.2f}; {agree}/{len(seg)} rules agree on "
        f"the member count; members per rule: min {min(seg):,}, median "
        f"{sorted(seg)[len(seg) // 2]:,}, max {max(seg):,}"
    )


if __name__ == "__main__":
    main()

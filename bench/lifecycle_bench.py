"""Lifecycle stages against the generator's true churn, next to single global recency windows.

    python bench/lifecycle_bench.py --customers 20000 --seed 3

Generates a store, ingests it, builds profiles as of the end of the generated period, and
scores "churned" (per-person stage, and "no order for W days" for several W) against the
people the generator actually made drop out.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from _sample import SAMPLE_END, ingest_sample

from segone.datasets import generate_sample
from segone.datasets.truth import identity_scores, lifecycle_scores
from segone.pipeline.build import build
from segone.store.duckdb import DuckDBWarehouse


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--customers", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        out = Path(d)
        generate_sample(out, customers=a.customers, seed=a.seed)
        with DuckDBWarehouse(out / "wh.duckdb") as wh:
            ingest_sample(wh, out)
            build(wh, as_of=SAMPLE_END)
            scores = lifecycle_scores(wh, out / "truth")
            ident = identity_scores(wh, out / "truth")
    print(
        f"{a.customers:,} people, seed {a.seed}; {scores['buyers']:,} buyers, "
        f"{scores['truly_churned']:,} truly churned; identity mixed {ident['mixed_rate']:.2%}\n"
    )
    print("| rule for 'churned' | accuracy | precision | recall | F1 |\n|---|---:|---:|---:|---:|")
    for k, v in scores.items():
        if isinstance(v, dict):
            print(
                f"| {k} | {v['accuracy']:.3f} | {v['precision']:.3f} | "
                f"{v['recall']:.3f} | {v['f1']:.3f} |"
            )
    print("\n" + json.dumps(scores))


if __name__ == "__main__":
    main()

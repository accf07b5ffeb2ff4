"""Buy again and new to you, scored apart, on a generated store: what ``/v1/decide`` ranks
against mass, segment, the person's own history and the previous model (next products).

    OPENBLAS_NUM_THREADS=1 python bench/reco_bench.py --customers 3000 --seed 7

Generates a store (with its planted bundles), ingests every file and builds identities and
profiles, or reuses such a warehouse with ``--warehouse``. Every method learns from purchases up
to ``--cutoff`` and ranks 10 products per person; each person who bought after the cutoff is
scored on what they bought then, in two parts: products they had bought before ("buy again")
and products new to them ("new to you"), hit rate and NDCG at 10 over the people with at least
one such product.

Methods: mass (the 10 products with the most buyers, the same for everyone); segment (the 10
with the most buyers in the person's top category as of the cutoff); own history (the person's
most bought products, then mass); next products (the previous model: ``NextProducts`` with its
defaults, which never offers what the person bought); segone decide (the preference model's
choice probability over the whole catalogue, items its buyers rarely buy again left out as
``decide`` does by default, with and without the association rules: exactly ``decide``'s
ranking before any feedback).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads OpenBLAS

import ibis
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from nextproducts_bench import prepare

from segone.decisions.catalogue import CatalogueIndex
from segone.decisions.policy import PolicyParams
from segone.decisions.priors import priors
from segone.models.association import ItemAssociations
from segone.models.nextproducts import NextProducts, purchase_lines
from segone.models.preference import (
    ItemPreferences,
    catalogue_fields,
    occasions,
    person_weights,
)
from segone.pipeline.build import profiles_expr
from segone.store.base import Warehouse
from segone.store.duckdb import DuckDBWarehouse

K = 10


def dcg(ranked: list[str], relevant: set[str], k: int = K) -> float:
    return sum(1.0 / math.log2(r + 2) for r, i in enumerate(ranked[:k]) if i in relevant)


def score(lists: dict[str, list[str]], truth: dict[str, set[str]]) -> tuple[float, float, int]:
    """(hit@K, NDCG@K, people) over the people with at least one relevant product."""
    hits, ndcgs = [], []
    for who, rel in truth.items():
        if not rel:
            continue
        got = lists.get(who, [])[:K]
        hits.append(float(any(i in rel for i in got)))
        ideal = dcg(sorted(rel)[:K], rel)
        ndcgs.append(dcg(got, rel) / ideal if ideal > 0 else 0.0)
    return float(np.mean(hits)), float(np.mean(ndcgs)), len(hits)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--customers", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--cutoff", default="2024-07-01", help="train before, test after (UTC)")
    ap.add_argument("--warehouse", type=Path, help="reuse a built warehouse (skip generation)")
    a = ap.parse_args()
    cutoff = datetime.fromisoformat(a.cutoff).replace(tzinfo=UTC)
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        db = a.warehouse or prepare(Path(d), a.customers, a.seed)
        prep_s = time.perf_counter() - t
        with DuckDBWarehouse(db, read_only=a.warehouse is not None) as wh:
            run(wh, cutoff, a, prep_s)


def run(wh: Warehouse, cutoff: datetime, a: argparse.Namespace, prep_s: float) -> None:
    before = occasions(wh, purchase_lines(wh, as_of=cutoff), cutoff)
    far = datetime(9999, 1, 1, tzinfo=UTC)
    after = occasions(wh, purchase_lines(wh, since=cutoff), far)
    after = after[after.t > (cutoff - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()]
    owned = before.groupby("customer_id").product_id.agg(set).to_dict()
    bought = after.groupby("customer_id").product_id.agg(set).to_dict()
    people = sorted(bought)
    again = {p: bought[p] & owned.get(p, set()) for p in people}
    new = {p: bought[p] - owned.get(p, set()) for p in people}

    buyers = before.drop_duplicates(["customer_id", "product_id"])
    mass = buyers.product_id.value_counts().index.tolist()
    prof = wh.to_arrow(
        profiles_expr(wh, ibis.literal(cutoff)).select("customer_id", "top_category")
    ).to_pandas()
    seg_of = dict(zip(prof.customer_id, prof.top_category, strict=True))
    seg_top: dict[object, list[str]] = {}
    b = buyers.assign(seg=buyers.customer_id.map(seg_of))
    for s, g in b.groupby("seg"):
        seg_top[s] = g.product_id.value_counts().index.tolist()[:K]
    counts = before.groupby(["customer_id", "product_id"]).size().rename("n").reset_index()
    counts = counts.sort_values(["customer_id", "n"], ascending=[True, False])
    own = counts.groupby("customer_id").product_id.agg(list).to_dict()

    lists: dict[str, dict[str, list[str]]] = {}
    timing: dict[str, float] = {}

    def timed(name: str, f: Callable[[], dict[str, list[str]]]) -> None:
        t = time.perf_counter()
        lists[name] = f()
        timing[name] = time.perf_counter() - t

    timed("mass (most buyers)", lambda: {p: mass[:K] for p in people})
    timed(
        "segment (top category)",
        lambda: {p: seg_top.get(seg_of.get(p), mass[:K]) for p in people},
    )
    timed(
        "own history, then mass",
        lambda: {p: list(dict.fromkeys(own.get(p, [])[:K] + mass[: 2 * K]))[:K] for p in people},
    )

    def nextproducts() -> dict[str, list[str]]:
        m = NextProducts(random_state=a.seed).fit(
            wh, purchase_lines(wh, as_of=cutoff), as_of=cutoff
        )
        recs = m.recommend(np.array(people), n=K).to_pandas().sort_values(["customer_id", "rank"])
        return recs.groupby("customer_id").product_id.agg(list).to_dict()

    timed("next products (previous model)", nextproducts)

    cats, names = catalogue_fields(wh)
    pref = ItemPreferences().fit_frame(before, categories=cats, as_of=cutoff)
    params = pref.item_params()
    rules = ItemAssociations().fit_frame(before).item_rules(names)
    weights = person_weights(before, pref.params()["half_life_cycles"])
    w_of: dict[str, dict[str, float]] = {}
    for c, i, x in zip(weights.customer_id, weights.product_id, weights.weight, strict=True):
        w_of.setdefault(str(c), {})[str(i)] = float(x)

    def decide_lists(with_rules: bool) -> dict[str, list[str]]:
        docs = {
            i: {
                "name": names.get(i),
                "category": cats.get(i),
                **p,
                **({"associations": rules[i]} if with_rules and i in rules else {}),
            }
            for i, p in params.items()
        }
        for k in {str(x) for x in names} - set(docs):
            docs[k] = {"name": names[k], "category": cats.get(k)}
        idx = CatalogueIndex(docs)
        keep = np.arange(len(idx))
        prm = PolicyParams()
        out: dict[str, list[str]] = {}
        for p in people:
            mine = owned.get(p, set())
            published = {"preferences": w_of.get(p, {}), "owned": sorted(mine)}
            if not published["preferences"]:
                out[p] = mass[:K]
                continue
            pa = priors(idx, keep, {}, [], prm, published, mine, idx)
            assert pa.probability is not None
            score = pa.probability.copy()
            # decide's default: what its buyers rarely buy again is not offered to owners
            mask = np.array([i in mine for i in idx.ids]) & ~idx.buy_again
            score[mask] = -1.0
            top = np.argsort(-score, kind="stable")[:K]
            out[p] = [idx.ids[k] for k in top]
        return out

    timed("segone decide: preferences", lambda: decide_lists(False))
    timed("segone decide: preferences + associations", lambda: decide_lists(True))

    cmd = "OPENBLAS_NUM_THREADS=1 python bench/reco_bench.py " + " ".join(sys.argv[1:])
    n_again = sum(1 for v in again.values() if v)
    n_new = sum(1 for v in new.values() if v)
    print(f"## Buy again and new to you (time split at {a.cutoff})\n")
    print(f"    {cmd}\n")
    print(
        (
            f"Warehouse {a.warehouse} (reused). "
            if a.warehouse
            else f"{a.customers:,} generated people (seed {a.seed}), ingested and built in "
            f"{prep_s:.0f} s. "
        )
        + f"{len(people):,} people bought after the cutoff: {n_again:,} bought again something "
        f"they had bought before, {n_new:,} something new to them. Half-life "
        f"{pref.params()['half_life_cycles']} cycles, prior x{pref.prior_scale_}, "
        f"{int(sum(1 for x in params.values() if x['buy_again']))} of {len(params)} items "
        "offered again to their owners.\n"
    )
    print(
        f"| method | buy again hit@{K} | buy again NDCG@{K} | new to you hit@{K} "
        f"| new to you NDCG@{K} | s |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, ls in lists.items():
        h1, n1, _ = score(ls, again)
        h2, n2, _ = score(ls, new)
        print(f"| {name} | {h1:.3f} | {n1:.3f} | {h2:.3f} | {n2:.3f} | {timing[name]:.1f} |")


if __name__ == "__main__":
    main()

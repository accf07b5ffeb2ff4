"""CPU time of one ``decide()`` call (pure decision logic, no store), 50 and 500 candidates.

    python bench/decide_bench.py --calls 2000 --seed 7

Each call ranks the candidates for a person with batch recommendations, a taste profile,
channel history and counters for every item (as after some traffic), and picks a channel:
"catalogue" ranks the whole catalogue (a ``CatalogueIndex``, as the Engine passes it), "list"
ranks the same number of items given in the request out of a 520-item catalogue (the demo's
size). Prints the median and p99 wall time per call over ``--calls`` calls (after a warm-up),
the mean CPU time per call, and the same for ``decision_keys()``, which the Engine calls first
to know which counters to load. ``--preferences`` publishes a preference model for the person
(their weights for 20 items, every item's prior, nested-model parameters and buy-again flag,
association rules on a tenth of the items), the path ``decide`` then takes.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

import numpy as np

from segone.decisions import CatalogueIndex, DecisionSettings, decide, decision_keys


def _setup(
    n: int, seed: int, listed: bool, prefs: bool = False
) -> tuple[dict, dict, dict, CatalogueIndex, dict, dict]:
    r = np.random.default_rng(seed)
    cats = ["Home > Kitchen", "Home > Garden", "Sports > Running", "Books > Fiction"]
    catalogue = {
        f"P{i:04d}": {
            "name": f"product {i}",
            "category": f"{cats[i % len(cats)]} > x",
            "popularity": float(r.integers(1, 1000)),
        }
        for i in range(520 if listed else n)
    }
    ids = list(catalogue)[:n]
    view = {
        "lifecycle_stage": "at_risk",
        "consent_email": True,
        "consent_sms": True,
        "consent_push": False,
        "p_email_click": 0.04,
        "category_affinity": {"Home > Kitchen": 0.6, "Sports > Running": 0.4},
        "products_bought": ids[:3],
    }
    published = {
        "recommendations": [
            {"product_id": p, "score": float(s), "reason": "because you bought P0001"}
            for p, s in zip(ids[3:13], np.linspace(1, 0.1, 10), strict=True)
        ]
    }
    if prefs:  # a published preference model: every item's prior, the person's weights
        cat_prior = {c: float(r.gamma(1.0, 0.2)) for c in cats}
        for k, doc in enumerate(catalogue.values()):
            doc["preference_prior"] = float(r.gamma(0.5, 0.01))
            doc["buy_again"] = bool(r.random() < 0.5)
            doc["price"] = float(r.integers(5, 100))
            # the nested model (category, then item) and association rules on a tenth
            doc["category_prior"] = cat_prior[cats[k % len(cats)]]
            doc["category_total"] = sum(cat_prior.values())
            doc["within_prior"] = float(r.gamma(0.5, 0.1))
            doc["within_total"] = 5.0
            if k % 10 == 0:
                doc["associations"] = [
                    {
                        "kind": "basket",
                        "if": [ids[1], ids[2]],
                        "if_names": ["product 1", "product 2"],
                        "confidence": 0.5,
                        "lift": 20.0,
                        "count": 40,
                    },
                    {
                        "kind": "sequence",
                        "if": [ids[0]],
                        "confidence": 0.3,
                        "lift": 8.0,
                        "count": 12,
                    },
                ]
        published["preferences"] = {p: float(r.random() * 3) for p in ids[:20]}
        published["owned"] = ids[:3]
    context: dict = {"placement": "home", "limit": 10}
    if listed:
        context["candidates"] = ids
    keys = decision_keys(view, context, catalogue, None, published)
    t = r.integers(0, 2000, len(keys)).astype(float)
    stats = {k: (float(r.binomial(int(x), 0.05)), float(x)) for k, x in zip(keys, t, strict=True)}
    now = datetime(2024, 5, 1, 12, tzinfo=UTC)
    channel_doc = {
        "email": {"sent": 12, "responded": 2, "recent": [now.isoformat()]},
        "sms": {"sent": 3, "responded": 0, "recent": []},
    }
    return view, published, context, CatalogueIndex(catalogue), stats, channel_doc


def _time(fn: object, calls: int) -> tuple[float, float, float]:
    """Median and p99 wall milliseconds per call, and mean CPU milliseconds per call."""
    assert callable(fn)
    for _ in range(min(200, calls)):
        fn()
    out = np.empty(calls)
    cpu = time.process_time()
    for k in range(calls):
        t = time.perf_counter()
        fn()
        out[k] = time.perf_counter() - t
    cpu = time.process_time() - cpu
    return float(np.median(out) * 1e3), float(np.percentile(out, 99) * 1e3), cpu / calls * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--preferences",
        action="store_true",
        help="publish a preference model (segone.models.preference) for the person and items",
    )
    args = ap.parse_args()
    settings = DecisionSettings()
    now = datetime(2024, 5, 1, 12, tzinfo=UTC)
    rng = np.random.default_rng(args.seed)
    head = ("candidates", "from", "step", "median ms", "p99 ms", "cpu ms")
    print("{:>10} {:<10} {:<14} {:>10} {:>8} {:>8}".format(*head))
    for n, listed in ((50, False), (50, True), (500, False), (500, True)):
        view, published, context, catalogue, stats, channel_doc = _setup(
            n, args.seed, listed, args.preferences
        )

        def one(
            view: dict = view,
            published: dict = published,
            context: dict = context,
            catalogue: CatalogueIndex = catalogue,
            stats: dict = stats,
            channel_doc: dict = channel_doc,
        ) -> None:
            decide(view, published, context, catalogue, stats, channel_doc, settings, now, rng)

        def keys(
            view: dict = view, context: dict = context, catalogue: CatalogueIndex = catalogue
        ) -> None:
            decision_keys(view, context, catalogue, settings)

        for name, fn in (("decide", one), ("decision_keys", keys)):
            med, p99, cpu = _time(fn, args.calls)
            src = "list" if listed else "catalogue"
            print(f"{n:>10} {src:<10} {name:<14} {med:>10.3f} {p99:>8.3f} {cpu:>8.3f}")


if __name__ == "__main__":
    main()

"""A realistic multichannel store with ground truth, generated deterministically from a seed.

Real people appear under 1-4 identities (web shop account with cookies, CRM contact, loyalty
card, social handle) with typos and formatting variants; some share a family e-mail or a
kiosk device (traps for over-merging). Purchases follow a heterogeneous buy-till-you-die
process (Pareto/NBD-like rates, geometric drop-out), discount seekers buy on promotion, VIPs
buy more, some lines are returned, and some people's tastes move at a known date after a life
event. Web, e-mail and social behaviour follow each person's own propensities.

What segone is shown (``data/``) and what really happened (``truth/``) are written apart.
Everything is vectorised with numpy; 100k people take a few seconds.


The package, by concern: ``people`` (who they are, how they behave), ``identities`` (how a
person shows up in a record), ``orders``, ``crm`` (customer records of three sources),
``events``, ``interactions``, ``truth``, ``catalog``, ``sink`` (writing the files), and
``generator`` (one block of people, in the order of the random draws).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.csv as pacsv

from segone.datasets.sample.catalog import _Catalog
from segone.datasets.sample.common import SampleConfig
from segone.datasets.sample.generator import _Gen
from segone.datasets.sample.sink import _Sink

__all__ = ["SAMPLE_FILES", "SAMPLE_TOML", "SampleConfig", "generate_sample"]


def generate_sample(
    out: str | Path, customers: int = 10_000, seed: int = 0, **kwargs: Any
) -> dict[str, Any]:
    """Write a generated store to ``out/data`` and its ground truth to ``out/truth``.

    Returns the counts every table should hold once ``out/data`` is ingested.
    """
    cfg = SampleConfig(customers=customers, seed=seed, **kwargs)
    if customers <= 0:
        raise ValueError("customers must be positive")
    catalog = _Catalog.build(np.random.default_rng([seed, 999_999]))
    sink = _Sink(Path(out))
    counts: dict[str, int] = {}
    offsets = {"orders": 0, "interactions": 0}
    try:
        sink.csv("products.csv", catalog.table())
        pacsv.write_csv(catalog.bundles_truth(), sink.truth / "bundles.csv")
        for block, start in enumerate(range(0, customers, cfg.block_size)):
            n = min(cfg.block_size, customers - start)
            part = _Gen(cfg, n=n, block=block, sink=sink, catalog=catalog, offsets=offsets).run()
            for k, v in part.items():
                counts[k] = counts.get(k, 0) + int(v)
    finally:
        sink.close()
    counts["products"] = len(catalog.ids)
    counts["customers"] = sum(
        counts[k] for k in ("customers_shop", "customers_crm", "customers_loyalty")
    )
    counts["quarantine"] = sum(v for k, v in counts.items() if k.startswith("quarantine_"))
    (sink.truth / "counts.json").write_text(json.dumps(counts, indent=2, sort_keys=True))
    return counts


# the loyalty export calls its record id "card_number": segone.toml maps it (see SAMPLE_TOML)
SAMPLE_TOML = """
[ingest.mapping.customers_loyalty]
source_id = "card_number"
loyalty_id = "card_number"
"""

# which kind each generated file is, in load order
SAMPLE_FILES: list[tuple[str, str]] = [
    ("products", "products.csv"),
    ("customers", "customers_shop.csv"),
    ("customers", "customers_crm.csv"),
    ("customers", "customers_loyalty.csv"),
    ("orders", "orders.csv"),
    ("events", "events.jsonl"),
    ("interactions", "interactions.csv"),
]

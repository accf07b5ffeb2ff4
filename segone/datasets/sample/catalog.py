"""The product catalogue, with the bundles planted in it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from segone.datasets import vocab


@dataclass
class _Catalog:
    """The product catalogue: 20 products in each leaf category."""

    ids: np.ndarray
    names: np.ndarray
    categories: np.ndarray
    prices: np.ndarray
    brands: np.ndarray
    leaf_products: list[np.ndarray]

    @classmethod
    def build(cls, rng: np.random.Generator) -> _Catalog:
        rows: list[tuple[str, str, str, float, str]] = []
        leaves: list[np.ndarray] = []
        for li, (cat, base, nouns) in enumerate(vocab.CATEGORIES):
            start = len(rows)
            for j in range(20):
                adj = vocab.ADJECTIVES[(j * 7 + li) % len(vocab.ADJECTIVES)]
                price = round(float(base * rng.lognormal(0, 0.35)), 2)
                rows.append(
                    (f"P{len(rows):05d}", f"{adj} {nouns[j % len(nouns)]}", cat, price, adj)
                )
            leaves.append(np.arange(start, len(rows)))
        col = lambda i: np.array([r[i] for r in rows], dtype=object)  # noqa: E731
        out = cls(col(0), col(1), col(2), np.array([r[3] for r in rows]), col(4), leaves)
        out.plant_bundles()
        return out

    def plant_bundles(self) -> None:
        """Give the planted bundles' products (``vocab.BUNDLES``) the least popular places of
        their leaf categories (position 19, 18, ...) and their names; ``bundles`` holds them as
        (kind, antecedent products, consequent product, confidence, rate) and ``planted_only``
        marks the products sold only through a bundle."""
        leaf_of = {c: k for k, (c, _, _) in enumerate(vocab.CATEGORIES)}
        used: dict[str, int] = {}
        at: dict[tuple[str, str], int] = {}

        def place(leaf: str, name: str) -> int:
            if (leaf, name) not in at:
                slot = 19 - used.get(leaf, 0)
                used[leaf] = used.get(leaf, 0) + 1
                k = int(self.leaf_products[leaf_of[leaf]][slot])
                self.names[k] = name
                at[(leaf, name)] = k
            return at[(leaf, name)]

        self.bundles: list[tuple[str, list[int], int, float, float]] = []
        self.planted_only = np.zeros(len(self.ids), bool)
        for kind, ante, cons, conf, rate in vocab.BUNDLES:
            a = [place(*x) for x in ante]
            c = place(*cons)
            self.bundles.append((kind, a, c, conf, rate))
            self.planted_only[c] = True
            if len(a) == 1:
                self.planted_only[a[0]] = True

    def bundles_truth(self) -> pa.Table:
        """The planted bundles (``truth/bundles.csv``): antecedent ids and names joined by
        `` + ``, the consequent, the true confidence and how often the antecedents were planted."""
        rows = [
            {
                "kind": kind,
                "antecedent_ids": " + ".join(str(self.ids[k]) for k in a),
                "antecedent_names": " + ".join(str(self.names[k]) for k in a),
                "consequent_id": str(self.ids[c]),
                "consequent_name": str(self.names[c]),
                "confidence": conf,
                "rate": rate,
            }
            for kind, a, c, conf, rate in self.bundles
        ]
        return pa.Table.from_pylist(rows)

    def table(self) -> pa.Table:
        return pa.table(
            {
                "sku": self.ids,
                "title": self.names,
                "category": self.categories,
                "price": self.prices,
                "brand": self.brands,
            }
        )

"""Item-to-item association rules ("group leverage"): what people who bought X (and Y) also buy.

Two kinds of rule, both with support, confidence and lift:

* **basket**: ``{X} -> Z`` and ``{X, Y} -> Z`` within one order. Over ``N`` orders, with
  ``n(S)`` the orders holding every item of ``S``: support ``n(S + Z) / N``, confidence
  ``n(S + Z) / n(S)``, lift ``confidence / (n(Z) / N)``.
* **sequence**: ``X -> Z`` across a person's orders: of the people who bought ``X`` and ordered
  again afterwards, the share who bought ``Z`` in a later order (confidence); lift against the
  share of everyone with a second order who bought ``Z`` in an order other than their first.

A rule is kept when it rests on at least ``min_count`` orders (people), its confidence is at
least ``min_confidence``, and a one-sided binomial test rejects "confidence <= ``min_lift``
times the consequent's base rate" at ``alpha`` divided by the number of rules of its kind
counted (Bonferroni): among a quarter of a million item pairs, a pair seen 5 times where 0.3
were expected is chance (or shared taste in a category, which the preference model already
carries); a bundle seen 50 times is not. A two-item rule is
kept only when it is clearly more confident (``redundancy`` times) than either of its one-item
rules, so "Moneyball and a Red Sox banner -> the Red Sox Mr. Potato Head" stands beside
"Moneyball -> ..." only when buying both says more than buying one.

Counting is Apriori-style: pairs in every order (orders cut to their first ``max_basket``
distinct items), triples only on pairs seen ``min_count`` times. The rules are fitted in the
build beside the preference model (``segone.models.preference.build_preferences``) and
published on their consequent's catalogue document (``associations``), where ``decide`` finds
the rules whose antecedents the person owns.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import binom
from sklearn.base import BaseEstimator

from segone.exceptions import AssociationError, NotFittedError

RULE_COLUMNS = (
    "kind",
    "antecedent",
    "consequent",
    "count",
    "support",
    "confidence",
    "lift",
)


class ItemAssociations(BaseEstimator):
    """Basket and sequence association rules (see the module docstring)."""

    def __init__(
        self,
        *,
        min_count: int = 5,
        min_confidence: float = 0.1,
        min_lift: float = 2.0,
        redundancy: float = 1.1,
        max_basket: int = 12,
        max_items_per_person: int = 60,
        top_per_item: int = 10,
        alpha: float = 0.05,
    ) -> None:
        self.alpha = alpha
        self.min_count = min_count
        self.min_confidence = min_confidence
        self.min_lift = min_lift
        self.redundancy = redundancy
        self.max_basket = max_basket
        self.max_items_per_person = max_items_per_person
        self.top_per_item = top_per_item

    def _validate(self) -> None:
        if self.min_count < 1 or self.max_basket < 2 or self.top_per_item < 1:
            raise AssociationError(
                "ItemAssociations: min_count >= 1, max_basket >= 2, top_per_item >= 1"
            )
        if not 0 <= self.min_confidence <= 1 or not self.min_lift > 0:
            raise AssociationError("ItemAssociations: min_confidence in [0, 1], min_lift > 0")
        if not self.redundancy >= 1 or self.max_items_per_person < 2:
            raise AssociationError(
                "ItemAssociations: redundancy >= 1 and max_items_per_person >= 2"
            )

    def fit_frame(self, df: pd.DataFrame) -> ItemAssociations:
        """Learn from occasions: ``customer_id, product_id, t`` (epoch seconds) and optionally
        ``order_id`` (else an order is a person's purchases at one time)."""
        self._validate()
        if df.empty:
            raise AssociationError("ItemAssociations: no purchases to learn from")
        d = pd.DataFrame(
            {
                "c": pd.factorize(df.customer_id.astype(str), sort=True)[0],
                "t": df.t.to_numpy(float),
            }
        )
        items, names = pd.factorize(df.product_id.astype(str), sort=True)
        d["i"] = items
        key = df.order_id.astype(str) if "order_id" in df.columns else None
        d["b"] = (
            pd.factorize(key, sort=True)[0]
            if key is not None
            else d.groupby(["c", "t"]).ngroup().to_numpy()
        )
        self.items_ = np.asarray(names, dtype=object)
        basket = self._baskets(d[["b", "i"]])
        sequence = self._sequences(d[["c", "t", "i", "b"]])
        rules = pd.concat([basket, sequence], ignore_index=True)
        # a total order (ties broken by kind and antecedents): the published rules must not
        # depend on the order the engine returned the purchases in
        rules["_ante"] = [" + ".join(a) for a in rules.antecedent]
        self.rules_ = rules.sort_values(
            ["consequent", "confidence", "lift", "kind", "_ante"],
            ascending=[True, False, False, True, True],
            ignore_index=True,
            kind="mergesort",
        ).drop(columns="_ante")
        self.n_orders_ = int(d.b.nunique())
        self.n_people_ = int(d.c.nunique())
        return self

    # -- baskets ---------------------------------------------------------------------------
    def _baskets(self, d: pd.DataFrame) -> pd.DataFrame:
        d = d.drop_duplicates().sort_values(["b", "i"])
        d = d[d.groupby("b").cumcount() < self.max_basket]
        n = int(d.b.nunique())
        n1 = np.bincount(d.i.to_numpy(), minlength=len(self.items_)).astype(float)
        pairs = d.merge(d, on="b", suffixes=("_a", "_b"))
        pairs = pairs[pairs.i_a < pairs.i_b]
        n2 = pairs.groupby(["i_a", "i_b"]).size()
        out = []
        # one-item rules, both ways
        if len(n2):
            a = n2.index.get_level_values(0).to_numpy()
            b = n2.index.get_level_values(1).to_numpy()
            k = n2.to_numpy(float)
            for x, z in ((a, b), (b, a)):
                out.append(self._rules("basket", [x], z, k, n1[x], n1[z] / n, n))
        # two-item rules on frequent pairs
        freq = n2[n2 >= self.min_count]
        if len(freq):
            fp = pairs.set_index(["i_a", "i_b"]).loc[freq.index].reset_index()
            tri = fp.merge(d.rename(columns={"i": "i_c"}), on="b")
            tri = tri[(tri.i_c != tri.i_a) & (tri.i_c != tri.i_b)]
            n3 = tri.groupby(["i_a", "i_b", "i_c"]).size()
            if len(n3):
                a = n3.index.get_level_values(0).to_numpy()
                b = n3.index.get_level_values(1).to_numpy()
                c = n3.index.get_level_values(2).to_numpy()
                k = n3.to_numpy(float)
                nab = freq.reindex(pd.MultiIndex.from_arrays([a, b])).to_numpy(float)
                two = self._rules("basket", [a, b], c, k, nab, n1[c] / n, n)
                # the one-item rules' confidences, whether or not they were kept
                n2d = n2.to_dict()

                def pair(x: np.ndarray, y: np.ndarray) -> np.ndarray:
                    lo, hi = np.minimum(x, y), np.maximum(x, y)
                    return np.array(
                        [n2d.get((int(p), int(q)), 0) for p, q in zip(lo, hi, strict=True)],
                        dtype=float,
                    )

                if len(two):
                    ta, tb = (np.array([r[j] for r in two.ante], dtype=np.intp) for j in (0, 1))
                    tc = two.cons.to_numpy()
                    sub = np.maximum(pair(ta, tc) / n1[ta], pair(tb, tc) / n1[tb])
                    two = two[two.confidence.to_numpy() >= self.redundancy * sub]
                    out.append(two)
        return self._named(out)

    # -- sequences -------------------------------------------------------------------------
    def _sequences(self, d: pd.DataFrame) -> pd.DataFrame:
        first_order = d.groupby("c").t.transform("min")
        last_order = d.groupby("c").t.transform("max")
        per = (
            d.assign(first_order=first_order, last_order=last_order)
            .groupby(["c", "i"])
            .agg(
                first=("t", "min"),
                last=("t", "max"),
                first_order=("first_order", "first"),
                last_order=("last_order", "first"),
                k=("b", "nunique"),
            )
            .reset_index()
        )
        # the most bought items of people with very many (a bounded number of pairs per person)
        per = per.sort_values(["c", "k"], ascending=[True, False])
        per = per[per.groupby("c").cumcount() < self.max_items_per_person]
        repeaters = int(d.groupby("c").t.nunique().gt(1).sum())
        if repeaters == 0:
            return self._named([])
        ni = len(self.items_)
        # opportunity: bought X with an order after it; base: bought Z after one's first order
        opp = np.bincount(per.i[per["first"] < per.last_order], minlength=ni).astype(float)
        base = np.bincount(per.i[per["last"] > per.first_order], minlength=ni) / repeaters
        x = per[per["first"] < per.last_order][["c", "i", "first"]]
        z = per[per["last"] > per.first_order][["c", "i", "last"]]
        j = x.merge(z, on="c", suffixes=("_x", "_z"))
        j = j[(j.i_x != j.i_z) & (j["first"] < j["last"])]
        n = j.groupby(["i_x", "i_z"]).size()
        if not len(n):
            return self._named([])
        a = n.index.get_level_values(0).to_numpy()
        c = n.index.get_level_values(1).to_numpy()
        k = n.to_numpy(float)
        return self._named([self._rules("sequence", [a], c, k, opp[a], base[c], repeaters)])

    # -- shared ----------------------------------------------------------------------------
    def _rules(
        self,
        kind: str,
        ante: list[np.ndarray],
        cons: np.ndarray,
        k: np.ndarray,
        n_ante: np.ndarray,
        base: np.ndarray,
        total: int,
    ) -> pd.DataFrame:
        conf = k / np.maximum(n_ante, 1.0)
        lift = conf / np.maximum(base, 1e-12)
        # one-sided binomial test of "confidence > min_lift x base rate", Bonferroni-corrected
        # for every rule of this family that was counted
        p_null = np.clip(self.min_lift * base, 1e-12, 1.0)
        p_value = binom.sf(k - 1, np.maximum(n_ante, k).astype(np.int64), p_null)
        keep = (
            (k >= self.min_count)
            & (conf >= self.min_confidence)
            & (p_value < self.alpha / max(len(k), 1))
        )
        idx = np.flatnonzero(keep)
        return pd.DataFrame(
            {
                "kind": kind,
                "ante": list(zip(*(x[idx].tolist() for x in ante), strict=True)),
                "cons": cons[idx],
                "count": k[idx].astype(int),
                "support": k[idx] / total,
                "confidence": conf[idx],
                "lift": lift[idx],
            }
        )

    def _named(self, parts: list[pd.DataFrame]) -> pd.DataFrame:
        parts = [p for p in parts if len(p)]
        if not parts:
            return pd.DataFrame({c: [] for c in RULE_COLUMNS})
        r = pd.concat(parts, ignore_index=True)
        r["antecedent"] = [tuple(str(self.items_[x]) for x in a) for a in r.ante]
        r["consequent"] = self.items_[r.cons.to_numpy()].astype(str)
        return r[list(RULE_COLUMNS)]

    # -- results ---------------------------------------------------------------------------
    def _check(self) -> None:
        if not hasattr(self, "rules_"):
            raise NotFittedError("ItemAssociations is not fitted: call fit_frame() first")

    def rules(self) -> pd.DataFrame:
        """Every kept rule: kind, antecedent (tuple of item ids), consequent, count, support,
        confidence, lift; by consequent, most confident first."""
        self._check()
        return self.rules_.copy()

    def item_rules(self, names: dict[str, str] | None = None) -> dict[str, list[dict[str, Any]]]:
        """By consequent item, its ``top_per_item`` most confident rules as published on its
        catalogue document: ``kind``, ``if`` (antecedent ids), ``if_names`` (their names,
        else ids), ``confidence``, ``lift``, ``count``, ``support``."""
        self._check()
        names = names or {}
        out: dict[str, list[dict[str, Any]]] = {}
        rows: list[tuple[Any, ...]] = list(
            self.rules_[list(RULE_COLUMNS)].itertuples(index=False, name=None)
        )
        for kind, ante, cons, count, support, conf, lift in rows:
            got = out.setdefault(str(cons), [])
            if len(got) >= self.top_per_item:
                continue
            got.append(
                {
                    "kind": str(kind),
                    "if": [str(x) for x in ante],
                    "if_names": [names.get(str(x)) or str(x) for x in ante],
                    "confidence": round(float(conf), 4),
                    "lift": round(float(lift), 3),
                    "count": int(count),
                    "support": float(support),
                }
            )
        return out


def rule_scores(found: pd.DataFrame, truth: pd.DataFrame) -> dict[str, float | int]:
    """Precision and recall of ``found`` rules (:meth:`ItemAssociations.rules`) against planted
    bundles (``truth/bundles.csv`` of the sample generator).

    Recall: the share of planted rules found with their exact antecedents and kind. Precision:
    the share of found rules that a planted bundle implies: its consequent and a non-empty part
    of its antecedents (buying Moneyball alone does predict the Red Sox Mr. Potato Head when
    Moneyball and a banner together do), or the reverse of a basket bundle's one-item rule
    (items bought together predict each other both ways).
    """
    planted = [
        (str(k), tuple(sorted(str(a).split(" + "))), str(c), float(p))
        for k, a, c, p in zip(
            truth.kind, truth.antecedent_ids, truth.consequent_id, truth.confidence, strict=True
        )
    ]
    found_keys = {
        (str(k), tuple(sorted(str(x) for x in a)), str(c))
        for k, a, c in zip(found.kind, found.antecedent, found.consequent, strict=True)
    }
    hits = sum((k, a, c) in found_keys for k, a, c, _ in planted)

    def implied(kind: str, ante: tuple[str, ...], cons: str) -> bool:
        for k, a, c, _ in planted:
            if kind != k:
                continue
            if cons == c and set(ante) <= set(a):
                return True
            group = {*a, c}
            if k == "basket" and cons in group and set(ante) <= group and cons not in ante:
                return True
        return False

    right = sum(implied(*key) for key in found_keys)
    return {
        "planted": len(planted),
        "found": len(found_keys),
        "recall": hits / len(planted) if planted else math.nan,
        "precision": right / len(found_keys) if found_keys else math.nan,
    }

"""Which candidates a decision ranks, and each one's prior for this person.

* rate: the item's popularity relative to the most popular candidate, ``base_rate x (0.5 +
  relative popularity)`` (the base rate when popularity is unknown); items in the top quarter
  of that range and above the median candidate are cited as "bestseller";
* lift ("individual leverage"): ``1 + individual_weight x score / best score`` for an item in
  the person's published recommendations (by rank when scores are missing), times
  ``1 + taste_weight x share`` for the share of their taste held by the item's category
  (``category_affinity``, categories compared on their first two levels).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from segone.decisions.catalogue import CatalogueIndex
from segone.decisions.context import Context
from segone.decisions.policy import PolicyParams, PriorArrays
from segone.decisions.settings import DecisionSettings


def candidate_index(
    ctx: Context,
    catalogue: Mapping[str, Mapping[str, Any]],
    settings: DecisionSettings,
    recs: Sequence[Mapping[str, Any]],
) -> CatalogueIndex:
    """The candidates: the request's list (offers merged over their catalogue documents), else
    the catalogue, cut to the person's recommendations and the most popular items when it holds
    more than ``max_candidates``."""
    if ctx.candidates is not None:
        docs: dict[str, Mapping[str, Any]] = {}
        for i in ctx.candidates:
            doc = catalogue.get(i) or {}
            docs[i] = {**doc, **ctx.offers[i]} if i in ctx.offers else doc
        return CatalogueIndex(docs)
    idx = catalogue if isinstance(catalogue, CatalogueIndex) else CatalogueIndex(catalogue)
    if len(idx) <= settings.max_candidates:
        return idx
    mine = [r["product_id"] for r in recs if r["product_id"] in idx.pos]
    order = np.argsort(-np.nan_to_num(idx.popularity, nan=0.0), kind="stable")
    top = [idx.ids[k] for k in order[: max(settings.max_candidates - len(mine), 0)].tolist()]
    return CatalogueIndex({i: idx[i] for i in dict.fromkeys(mine + top)})


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _affinity(view: Mapping[str, Any]) -> dict[str, float]:
    """``category_affinity`` as {category: share}, from a map or a list of pairs."""
    raw = view.get("category_affinity")
    pairs = raw.items() if isinstance(raw, Mapping) else raw if isinstance(raw, list) else ()
    out: dict[str, float] = {}
    for p in pairs:
        if isinstance(p, list | tuple) and len(p) == 2 and isinstance(p[0], str):
            share = _number(p[1])
            if share and share > 0:
                out[p[0]] = min(share, 1.0)
    return out


def _taste(cat: Any, aff: Mapping[str, float]) -> tuple[float, str | None]:
    """(share of the person's taste, reason) of a category."""
    if not isinstance(cat, str):
        return 0.0, None
    key = " > ".join(cat.split(" > ")[:2])
    share = aff.get(key, 0.0)
    return share, (f"matches your taste ({key})" if share >= 0.2 else None)


def priors(
    idx: CatalogueIndex,
    keep: NDArray[np.intp],
    view: Mapping[str, Any],
    recs: Sequence[Mapping[str, Any]],
    prm: PolicyParams,
) -> PriorArrays:
    """The priors of the candidates ``idx.ids[keep]``, aligned with ``keep``."""
    n = len(keep)
    pop = idx.popularity[keep]
    top = idx.popularity_top
    rel = pop / top if top > 0 else np.full(n, np.nan)
    # a bestseller: in the top quarter of the popularity range and above the median candidate
    star = (rel >= 0.75) & (pop > idx.popularity_median)
    rate = np.where(np.isnan(rel), prm.base_rate, prm.base_rate * (0.5 + rel))
    lift = np.ones(n)
    rec_why: dict[int, str] = {}
    if recs:
        at = np.full(len(idx), -1, dtype=np.intp)
        at[keep] = np.arange(n)
        scores = [_number(r.get("score")) for r in recs]
        best = max((x for x in scores if x is not None and x > 0), default=0.0)
        for k, (r, sc) in enumerate(zip(recs, scores, strict=True)):
            c = idx.pos.get(r["product_id"])
            if c is None or at[c] < 0 or int(at[c]) in rec_why:
                continue
            # scores compare within one person only: relative to their best, else by rank
            share = max(sc, 0.0) / best if best > 0 and sc is not None else 1.0 - k / len(recs)
            lift[at[c]] += prm.individual_weight * share
            why = r.get("reason")
            rec_why[int(at[c])] = why if isinstance(why, str) and why else "recommended for you"
    codes = idx.category_codes[keep]
    taste_why: list[str | None] = [None] * len(idx.categories)
    aff = _affinity(view)
    if aff:
        tastes = [_taste(cat, aff) for cat in idx.categories]
        taste_why = [t[1] for t in tastes]
        lift *= 1.0 + prm.taste_weight * np.array([t[0] for t in tastes])[codes]

    def reasons(k: int) -> list[str]:
        out = [rec_why[k]] if k in rec_why else []
        why = taste_why[codes[k]]
        if why:
            out.append(why)
        if not out and star[k]:
            out.append("bestseller")
        return out

    return PriorArrays(rate, lift, reasons)

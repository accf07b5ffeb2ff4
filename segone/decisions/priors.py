"""Which candidates a decision ranks, and each one's prior for this person.

With a published preference model (the person's ``preferences`` weights and the catalogue's
``preference_prior``, ``segone.models.preference``), the model ranks:

* the person's probability of choosing candidate ``i`` is ``p_i`` proportional to
  ``(w_i + a_i) x (price_i / usual_i) ** price_elasticity x exp(feature_log_odds x feature_i +
  display_log_odds x display_i)`` over the candidates (``w``: their recency-weighted purchases,
  ``a``: everyone's pseudo-counts; price and flags from the offer objects of the request, else
  the catalogue); everyone's ``q_i`` is the same without ``w``;
* rate: ``base_rate x n x q_i`` (an average candidate responds at the base rate, a more
  chosen one more), so the counters learn each item's response at the placement;
* group leverage: a candidate that ends a published association rule whose antecedents the
  person owns (``segone.models.association``) has its pseudo-count ``a_i`` multiplied by
  ``1 + (lift - 1) x count / (count + association_strength)`` of the most confident such
  rule, which is cited ("82% of people who bought Moneyball and Red Sox Banner together also
  bought Red Sox Mr. Potato Head");
* lift: ``p_i / q_i`` (how much more this person chooses it than everyone), times
  ``1 + recommendation_weight x score / best score`` for an item in their published
  recommendations, with the standard deviation of ``p_i`` under the person's Dirichlet
  posterior (Thompson sampling draws it); the score is divided by ``base_rate x n``, so with no
  feedback yet it is ``p_i`` (the choice probability), and feedback moves it by the learned
  response rate over the prior one.

Without one (no build yet, or a person the build did not see):

* rate: the item's popularity relative to the most popular candidate, ``base_rate x (0.5 +
  relative popularity)`` (the base rate when popularity is unknown); items in the top quarter
  of that range and above the median candidate are cited as "bestseller";
* lift ("individual leverage"): ``1 + individual_weight x score / best score`` for an item in
  the person's published recommendations (by rank when scores are missing), times
  ``1 + taste_weight x share`` for the share of their taste held by the item's category
  (``category_affinity``, categories compared on their first two levels), times the
  association boost above.

Reasons name items by their catalogue ``name`` (the whole catalogue's when a candidate list
leaves the item out), never by id when a name exists.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np
from numpy.typing import NDArray

from segone.decisions.catalogue import CatalogueIndex, Rule
from segone.decisions.context import Context
from segone.decisions.policy import PolicyParams, PriorArrays
from segone.decisions.settings import DecisionSettings
from segone.models.affinity import propensity
from segone.profiles.reasons import named_reason


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
        if not ctx.offers and isinstance(catalogue, CatalogueIndex):
            try:
                return catalogue.subset(ctx.candidates)
            except KeyError:  # an item the catalogue does not hold: from the documents
                pass
        docs: dict[str, Mapping[str, Any]] = {}
        for i in ctx.candidates:
            doc = catalogue.get(i) or {}
            if i in ctx.offers:
                offer = ctx.offers[i]
                # an offer's price is compared with the catalogue's (the item's usual price)
                usual = doc.get("usual_price", doc.get("price"))
                docs[i] = {**doc, **({"usual_price": usual} if usual is not None else {}), **offer}
            else:
                docs[i] = doc
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


def _top2(cat: str) -> str:
    return " > ".join(cat.split(" > ")[:2])


def _affinity(view: Mapping[str, Any]) -> dict[str, float]:
    """``category_affinity`` (the preference model's probability of each category,
    ``segone.models.affinity``) as {category: probability}, from a map or a list of pairs, the
    categories summed at the first two levels of their path."""
    raw = view.get("category_affinity")
    pairs = raw.items() if isinstance(raw, Mapping) else raw if isinstance(raw, list) else ()
    out: dict[str, float] = {}
    for p in pairs:
        if isinstance(p, list | tuple) and len(p) == 2 and isinstance(p[0], str):
            share = _number(p[1])
            if share and share > 0:
                key = _top2(p[0])
                out[key] = min(out.get(key, 0.0) + share, 1.0)
    return out


def _taste(cat: Any, aff: Mapping[str, float]) -> tuple[float, str | None]:
    """(share of the person's taste, reason) of a category."""
    if not isinstance(cat, str):
        return 0.0, None
    key = _top2(cat)
    share = aff.get(key, 0.0)
    return share, (f"matches your taste ({key})" if share >= 0.2 else None)


def labeller(
    idx: CatalogueIndex, catalogue: Mapping[str, Mapping[str, Any]] | None
) -> Callable[[str], str]:
    """What reasons call an item id: its name in the candidates, else in the whole catalogue
    (a candidate list holds only the candidates), else the id."""

    def label(i: str) -> str:
        k = idx.pos.get(i)
        if k is not None and idx.names[k]:
            return idx.label(k)
        doc = catalogue.get(i) if catalogue is not None else None
        name = doc.get("name") if isinstance(doc, Mapping) else None
        return name if isinstance(name, str) and name.strip() else i

    return label


def association_reason(rule: Rule, item: str) -> str:
    """The sentence that cites a rule (names, not ids, when the catalogue has them)."""
    names = list(rule.names)
    said = " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
    pct = f"{rule.confidence:.0%}"
    if rule.kind == "sequence":
        return f"{pct} of people who bought {said} went on to buy {item}"
    if len(names) > 1:
        return f"{pct} of people who bought {said} together also bought {item}"
    return f"{pct} of people who bought {said} also bought {item} with it"


def _reason_of(rule: Rule, idx: CatalogueIndex, pos: int) -> str:
    return association_reason(rule, idx.label(pos))


def associated(
    idx: CatalogueIndex,
    keep: NDArray[np.intp],
    owned: Collection[str],
    prm: PolicyParams,
) -> tuple[NDArray[np.float64], dict[int, Callable[[], str]]]:
    """Group leverage: per candidate, ``1 + (lift - 1) x count / (count +
    association_strength)`` of its most confident published rule whose antecedents the person
    owns (1 without one), and that rule's sentence (written only for the items shown)."""
    n = len(keep)
    boost = np.ones(n)
    why: dict[int, Callable[[], str]] = {}
    rules = idx.associations if owned else {}
    if not rules:
        return boost, why
    at = np.full(len(idx), -1, dtype=np.intp)
    at[keep] = np.arange(n)
    mine = owned if isinstance(owned, set | frozenset) else set(owned)
    for pos, rs in rules.items():
        k = int(at[pos])
        if k < 0:
            continue
        item = idx.ids[pos]
        for r in rs:
            if item not in r.antecedent and r.antecedent <= mine:
                shrink = r.count / (r.count + prm.association_strength)
                boost[k] = 1.0 + max(r.lift - 1.0, 0.0) * shrink
                why[k] = partial(_reason_of, r, idx, pos)
                break
    return boost, why


def _weights(published: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    w = (published or {}).get("preferences")
    return w if isinstance(w, Mapping) and w else None


def _rec_lift(
    idx: CatalogueIndex,
    keep: NDArray[np.intp],
    recs: Sequence[Mapping[str, Any]],
    weight: float,
    label: Callable[[str], str],
) -> tuple[NDArray[np.float64], dict[int, str]]:
    """``1 + weight x score / best`` for recommended candidates, and their reasons."""
    n = len(keep)
    lift = np.ones(n)
    rec_why: dict[int, str] = {}
    if not recs:
        return lift, rec_why
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
        lift[at[c]] += weight * share
        why = r.get("reason")
        rec_why[int(at[c])] = (
            named_reason(why, label) if isinstance(why, str) and why else "recommended for you"
        )
    return lift, rec_why


def _preferred(
    idx: CatalogueIndex,
    keep: NDArray[np.intp],
    weights: Mapping[str, Any],
    recs: Sequence[Mapping[str, Any]],
    prm: PolicyParams,
    owned: Collection[str],
    label: Callable[[str], str],
    catalogue: Mapping[str, Mapping[str, Any]] | None = None,
) -> PriorArrays:
    """Priors from the preference model (see the module docstring)."""
    n = len(keep)
    a = idx.preference_prior[keep]
    known = a[~np.isnan(a)]
    # an item the last fit did not see gets the smallest pseudo-count it gave
    a = np.where(np.isnan(a), float(known.min()) if len(known) else 1.0, a)
    # the person's weights (a few hundred at most) put at their candidates' places
    w = np.zeros(n)
    at = np.full(len(idx), -1, dtype=np.intp)
    at[keep] = np.arange(n)
    for item, x in weights.items():
        k = idx.pos.get(item)
        v = _number(x) if k is not None and at[k] >= 0 else None
        if v is not None and v > 0:
            w[at[k]] = v
    price, usual = idx.price[keep], idx.usual_price[keep]
    ratio = np.where((price > 0) & (usual > 0), price / np.where(usual > 0, usual, 1.0), 1.0)
    feat, disp = idx.feature[keep], idx.display[keep]
    ctx = prm.price_elasticity * np.log(ratio) + prm.feature_log_odds * feat
    ctx = ctx + prm.display_log_odds * disp
    ctx -= ctx.max() if n else 0.0
    odds = np.exp(ctx)
    boost, assoc_why = associated(idx, keep, owned, prm)
    nested = _nested(idx, keep, weights, w, catalogue)
    if nested is not None:
        # category first, then the item within it: (W_c + b_c) / (W + B) x
        # (w_i + a_i) / (W_c + T_c), with a_i the item's pseudo-count within its category
        cat_share, wa, w_c, t_c = nested
        p = cat_share * (w + wa * boost) / (w_c + t_c) * odds
        q = cat_share_everyone(idx, keep) * wa / t_c * odds
        a = wa
    else:
        p = (w + a * boost) * odds
        q = a * odds
    p /= p.sum()
    q /= q.sum()
    rate = np.clip(prm.base_rate * n * q, 1e-4, 0.9)
    lift, rec_why = _rec_lift(idx, keep, recs, prm.recommendation_weight, label)
    # the person's Dirichlet posterior: the marginal of p_i has variance p (1 - p) / (A + 1)
    alpha0 = float((w + a * boost).sum())
    lift_sd = lift * np.sqrt(p * (1.0 - p) / (alpha0 + 1.0)) / q
    lift *= p / q
    total_w = float(w.sum())

    def reasons(k: int) -> list[str]:
        out: list[str] = [assoc_why[k]()] if k in assoc_why else []
        if w[k] > 0 and total_w > 0:
            share = w[k] / total_w
            out.append(
                f"your usual choice ({share:.0%} of your recent purchases)"
                if share >= 0.5
                else f"you bought {idx.label(int(keep[k]))} before"
            )
        if ratio[k] <= 0.97:
            out.append(f"{1 - ratio[k]:.0%} below its usual price")
        if feat[k]:
            out.append("on promotion")
        if disp[k]:
            out.append("on display")
        if k in rec_why:
            out.append(rec_why[k])
        if not out and q[k] >= 1.5 / n:
            out.append(f"chosen by many ({q[k]:.0%} of choices among these)")
        return out

    return PriorArrays(
        rate,
        lift,
        reasons,
        p,
        lambda k: idx.names[keep[k]],
        _category(idx, keep),
        lift_sd,
        prm.base_rate * n,
    )


NESTED_KEYS = ("category_prior", "category_total", "within_prior", "within_total")


def _nested(
    idx: CatalogueIndex,
    keep: NDArray[np.intp],
    weights: Mapping[str, Any],
    w: NDArray[np.float64],
    catalogue: Mapping[str, Mapping[str, Any]] | None,
) -> (
    tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]] | None
):
    """With a nested fit published for every candidate: each candidate's category share for
    the person, its pseudo-count within its category, the person's weight in its category and
    the category's pseudo-count total (None without)."""
    cols = [idx.learned(k)[keep] for k in NESTED_KEYS]
    if not len(keep) or any(np.isnan(c).any() for c in cols):
        return None
    b_c, big_b, wa, t_c = cols
    # the person's weight per category, over everything they bought (not only candidates)
    n_cat = len(idx.categories)
    code_of: dict[Any, int] | None = None
    per_code = np.zeros(n_cat + 1)
    total = 0.0
    for item, x in weights.items():
        v = _number(x)
        if not v or v <= 0:
            continue
        total += v
        k = idx.pos.get(item)
        if k is not None:
            per_code[idx.category_codes[k]] += v
            continue
        doc = catalogue.get(item) if catalogue is not None else None
        cat = doc.get("category") if isinstance(doc, Mapping) else None
        if code_of is None:
            code_of = {c: j for j, c in enumerate(idx.categories) if isinstance(c, str)}
        per_code[code_of.get(cat, n_cat)] += v
    w_c = per_code[idx.category_codes[keep]]
    return propensity(w_c, total, b_c, big_b), wa, w_c, t_c


def cat_share_everyone(idx: CatalogueIndex, keep: NDArray[np.intp]) -> NDArray[np.float64]:
    """Everyone's share of each candidate's category (the nested model's prior)."""
    return np.asarray(idx.learned("category_prior")[keep] / idx.learned("category_total")[keep])


def _category(idx: CatalogueIndex, keep: NDArray[np.intp]) -> Callable[[int], str | None]:
    def category(k: int) -> str | None:
        c = idx.categories[idx.category_codes[keep[k]]]
        return c if isinstance(c, str) and c else None

    return category


def priors(
    idx: CatalogueIndex,
    keep: NDArray[np.intp],
    view: Mapping[str, Any],
    recs: Sequence[Mapping[str, Any]],
    prm: PolicyParams,
    published: Mapping[str, Any] | None = None,
    owned: Collection[str] = (),
    catalogue: Mapping[str, Mapping[str, Any]] | None = None,
) -> PriorArrays:
    """The priors of the candidates ``idx.ids[keep]``, aligned with ``keep``.

    ``owned``: the items the person bought (for the association rules); ``catalogue``: the
    whole catalogue, to name in reasons the items that are not candidates."""
    weights = _weights(published)
    label = labeller(idx, catalogue)
    if weights is not None and len(keep) and not np.isnan(idx.preference_prior[keep]).all():
        return _preferred(idx, keep, weights, recs, prm, owned, label, catalogue)
    n = len(keep)
    pop = idx.popularity[keep]
    top = idx.popularity_top
    rel = pop / top if top > 0 else np.full(n, np.nan)
    # a bestseller: in the top quarter of the popularity range and above the median candidate
    star = (rel >= 0.75) & (pop > idx.popularity_median)
    rate = np.where(np.isnan(rel), prm.base_rate, prm.base_rate * (0.5 + rel))
    lift, rec_why = _rec_lift(idx, keep, recs, prm.individual_weight, label)
    boost, assoc_why = associated(idx, keep, owned, prm)
    lift *= boost
    codes = idx.category_codes[keep]
    taste_why: list[str | None] = [None] * len(idx.categories)
    aff = _affinity(view)
    if aff:
        tastes = [_taste(cat, aff) for cat in idx.categories]
        taste_why = [t[1] for t in tastes]
        lift *= 1.0 + prm.taste_weight * np.array([t[0] for t in tastes])[codes]

    def reasons(k: int) -> list[str]:
        out = [assoc_why[k]()] if k in assoc_why else []
        if k in rec_why:
            out.append(rec_why[k])
        why = taste_why[codes[k]]
        if why:
            out.append(why)
        if not out and star[k]:
            out.append("bestseller")
        return out

    return PriorArrays(
        rate, lift, reasons, name=lambda k: idx.names[keep[k]], category=_category(idx, keep)
    )

"""``/v1/decide`` and ``/v1/feedback`` as pure functions: the Engine loads, we decide, it writes.

Nothing here reads or writes a store. Per request the Engine:

1. loads the person's merged profile (``view``), ``published`` doc, ``channel`` doc, the
   ``suppression`` docs of their identifiers and the ``catalogue``;
2. ``stats = tx.stats.get(decision_keys(view, context, catalogue, settings))``;
3. ``d = decide(...)``; then
   ``tx.decisions.log(d.decision_id, person_id, now, d.placement, d.log)``,
   ``tx.stats.add(d.stat_deltas)`` and, when ``d.channel_delta``, the channel doc updated with
   :func:`~segone.decisions.channel.apply_channel_delta`.

The catalogue is best given as a :class:`~segone.decisions.catalogue.CatalogueIndex` built
once per catalogue version. Offer objects given as candidates (``{"id": ..., ...}``) add to or
override the catalogue document of the same id. Items the person bought are read from
``view["products_bought"]`` and ``published["owned"]`` (lists of item ids) when present.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

from segone.decisions.catalogue import CatalogueIndex
from segone.decisions.channel import ChannelChoice, channel_key, choose_channel, suppressed
from segone.decisions.context import context_group, parse_context, recommendations
from segone.decisions.policy import (
    POLICY_NAME,
    POLICY_VERSION,
    UNKNOWN_GROUP,
    Counts,
    PolicyParams,
    Ranked,
    keys_for,
    thompson,
    update,
)
from segone.decisions.priors import candidate_index, priors
from segone.decisions.settings import DecisionSettings
from segone.exceptions import DecisionError


@dataclass(frozen=True)
class Decision:
    """What to show, where to follow up, and what the Engine must store."""

    decision_id: str
    placement: str
    group: str
    items: list[Ranked]
    channel: ChannelChoice
    #: every counter key read (what ``decision_keys`` returned for this request)
    stat_keys: list[str]
    #: JSON-able document for ``log_decision``: enough for off-policy evaluation and feedback
    log: dict[str, Any]
    #: counters to increment now (the follow-up contact on the chosen channel)
    stat_deltas: dict[str, Counts]
    #: contact to apply to the person's channel doc now (None: no channel chosen)
    channel_delta: dict[str, Any] | None

    def response(self) -> dict[str, Any]:
        """The ``/v1/decide`` response body."""
        return {
            "decision_id": self.decision_id,
            "placement": self.placement,
            "items": [
                {
                    "id": r.item,
                    "position": r.position,
                    "name": r.name,
                    "category": r.category,
                    "score": r.score,
                    "probability": r.probability,
                    "propensity": r.propensity,
                    "reasons": r.reasons,
                }
                for r in self.items
            ],
            "channel": {"name": self.channel.channel, "reason": self.channel.reason},
        }


def decision_keys(
    view: Mapping[str, Any] | None,
    context: Mapping[str, Any],
    catalogue: Mapping[str, Mapping[str, Any]],
    settings: Any = None,
    published: Mapping[str, Any] | None = None,
) -> list[str]:
    """The counter keys :func:`decide` reads for this request (load them with ``get_stats``)."""
    s = DecisionSettings.from_settings(settings)
    ctx = parse_context(context, s)
    idx = candidate_index(ctx, catalogue, s, recommendations(published))
    glob, grp = idx.keys_for_all(ctx.placement, context_group(view, s))
    return glob + grp + [channel_key(c) for c in s.channels]


@lru_cache(maxsize=16)
def _params(prm: PolicyParams) -> dict[str, Any]:
    return asdict(prm)


def _mask(idx: CatalogueIndex, items: Iterable[str]) -> NDArray[np.bool_]:
    m = np.zeros(len(idx), dtype=np.bool_)
    m[[k for i in items if (k := idx.pos.get(i)) is not None]] = True
    return m


def _bought(view: Mapping[str, Any], published: Mapping[str, Any] | None) -> set[str]:
    out: set[str] = set()
    for src in (view.get("products_bought"), (published or {}).get("owned")):
        if isinstance(src, list):
            out.update(str(x) for x in src)
    return out


def _category_flags(idx: CatalogueIndex, rules: Mapping[str, bool]) -> dict[int, bool]:
    """Category code -> exclude flag, the longest matching category prefix winning."""
    out: dict[int, bool] = {}
    for code, cat in enumerate(idx.categories):
        if not isinstance(cat, str):
            continue
        best = -1
        for prefix, flag in rules.items():
            if (cat == prefix or cat.startswith(prefix + " > ")) and len(prefix) > best:
                best = len(prefix)
                out[code] = flag
    return out


def decide(
    view: Mapping[str, Any] | None,
    published: Mapping[str, Any] | None,
    context: Mapping[str, Any],
    catalogue: Mapping[str, Mapping[str, Any]],
    stats: Mapping[str, Counts],
    channel_doc: Mapping[str, Any] | None,
    settings: Any,
    now: datetime,
    rng: np.random.Generator,
    *,
    suppressions: Mapping[str, Mapping[str, Any]] | None = None,
) -> Decision:
    """Rank the candidates for this person and pick the follow-up channel.

    ``catalogue``: documents by item id, or better a ``CatalogueIndex`` of them.
    ``settings``: a :class:`DecisionSettings` (build it once) or ``segone.config.Settings``.
    ``suppressions``: the ``suppression`` documents of the person's identifiers, by identifier.
    ``now`` must be timezone-aware.
    """
    if now.tzinfo is None:
        raise DecisionError("now must be timezone-aware")
    s = DecisionSettings.from_settings(settings)
    ctx = parse_context(context, s)
    view = view or {}
    group = context_group(view, s)
    recs = recommendations(published)
    idx = candidate_index(ctx, catalogue, s, recs)
    _, blocked_items = suppressed(suppressions, s.channels)
    # exclusions, each counted under the first cause that applies
    by_context = _mask(idx, ctx.exclude)
    by_suppression = (idx.blocked | _mask(idx, blocked_items)) & ~by_context
    dropped = by_context | by_suppression
    owned = _bought(view, published)
    eb = ctx.exclude_bought
    bought = owned if eb is not False else set()
    by_purchase = _mask(idx, bought) & ~dropped
    if (eb is None or isinstance(eb, dict)) and by_purchase.any():
        # learned per item: what people buy again (food, ink) is offered again, what they
        # do not (durables) is not; items the last build did not see are left out
        learned = by_purchase & ~idx.buy_again
        if isinstance(eb, dict):
            # per category, the request's word over what was learned
            for cat, flag in _category_flags(idx, eb).items():
                in_cat = by_purchase & (idx.category_codes == cat)
                learned = (learned & ~in_cat) | (in_cat if flag else np.zeros_like(in_cat))
        by_purchase = learned
    keep = np.flatnonzero(~(dropped | by_purchase))
    kept = keep.tolist()
    items = [idx.ids[k] for k in kept]
    glob, grp = idx.keys_for_all(ctx.placement, group)
    keys = ([glob[k] for k in kept], [grp[k] for k in kept])
    prm = s.policy
    ranking = thompson(
        items,
        priors(idx, keep, view, recs, prm, published, owned, catalogue),
        stats,
        slots=ctx.limit,
        rng=rng,
        placement=ctx.placement,
        group=group,
        params=prm,
        keys=keys,
    )
    if ctx.follow_up:
        channel = choose_channel(
            view,
            channel_doc,
            stats,
            channels=s.channels,
            cap=s.frequency_cap_per_day,
            now=now,
            rng=rng,
            suppressions=suppressions,
            prior_rate=s.channel_prior_rate,
            prior_strength=s.channel_prior_strength,
        )
    else:
        channel = ChannelChoice(None, "not asked")
    decision_id = uuid.uuid4().hex
    stat_deltas: dict[str, Counts] = {}
    channel_delta: dict[str, Any] | None = None
    if channel.channel is not None:
        # naming a follow-up channel is one contact on it (the cap counts these)
        stat_deltas[channel_key(channel.channel)] = (0.0, 1.0)
        channel_delta = {"channel": channel.channel, "sent": 1, "at": now.isoformat()}
    log: dict[str, Any] = {
        "decision_id": decision_id,
        "ts": now.isoformat(),
        "policy": {"name": POLICY_NAME, "version": POLICY_VERSION, "params": _params(prm)},
        "placement": ctx.placement,
        "page": ctx.page,
        "group": group,
        "individual": bool(recs),
        "slots": ctx.limit,
        "n_draws": ranking.n_draws,
        "draw": ranking.draw,
        "seed": ranking.seed,
        "candidates": items,
        "p_shown": ranking.p_shown.tolist(),
        "excluded": {
            "context": int(by_context.sum()),
            "suppressed": int(by_suppression.sum()),
            "bought": int(by_purchase.sum()),
        },
        "shown": [
            {
                "item": r.item,
                "position": r.position,
                "probability": r.probability,
                "propensity": r.propensity,
                "position_propensity": r.position_propensity,
                "score": r.score,
                "sampled": r.sampled,
            }
            for r in ranking.ranked
        ],
        "channel": channel.to_log(),
    }
    return Decision(
        decision_id=decision_id,
        placement=ctx.placement,
        group=group,
        items=ranking.ranked,
        channel=channel,
        stat_keys=keys[0] + keys[1] + [channel_key(c) for c in s.channels],
        log=log,
        stat_deltas=stat_deltas,
        channel_delta=channel_delta,
    )


def feedback_deltas(
    decision_log: Mapping[str, Any],
    item_id: str,
    kind: str,
    *,
    recorded: Collection[str] = (),
    channel: str | None = None,
) -> tuple[dict[str, Counts], dict[str, Any] | None]:
    """Counter increments (for ``add_stats``) and the channel doc delta (for
    ``apply_channel_delta``, or None) of one feedback on a logged decision.

    ``recorded``: the feedback kinds already recorded for this decision and item (repeats add
    nothing; see :func:`~segone.decisions.policy.update`). ``channel``: the channel the response
    came through, when it came from the follow-up (it must be the decision's channel); on-site
    feedback leaves it None and only the item counters move.
    """
    d = update(kind, recorded=recorded)
    shown = decision_log.get("shown") if isinstance(decision_log, Mapping) else None
    if not isinstance(shown, list) or "placement" not in decision_log:
        raise DecisionError("not a decision log")
    if not isinstance(item_id, str) or item_id not in {e.get("item") for e in shown}:
        raise DecisionError("item was not shown in this decision")
    deltas: dict[str, Counts] = {}
    if d != (0.0, 0.0):
        group = str(decision_log.get("group") or UNKNOWN_GROUP)
        for k in keys_for(str(decision_log["placement"]), group, item_id):
            deltas[k] = d
    channel_delta: dict[str, Any] | None = None
    if channel is not None:
        chosen = (decision_log.get("channel") or {}).get("chosen")
        if channel != chosen:
            raise DecisionError("feedback channel is not the channel this decision followed up on")
        if d[0] > 0:
            channel_delta = {"channel": channel, "responded": 1}
            deltas[channel_key(channel)] = (1.0, 0.0)
    return deltas, channel_delta

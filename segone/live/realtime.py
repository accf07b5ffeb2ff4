"""Real-time segments and triggers: what changed for a person when an event arrived.

``changes`` compares a person's state before and after an event and returns one
``Transition`` per change: ``segment_entered`` / ``segment_left`` for every segment of the
catalogue (built-in and project segments, decided by ``segone.segments.rules.evaluate`` on the
live view and its recent events), ``stage_changed`` (lifecycle stage from -> to) and
``taste_shift``. The state before is the one remembered in the person's document (``remember``)
when there is one, so a change that time alone brought about (a pricing visit leaving the
30-day window) fires at the person's next event; a person's first live event is compared with
their view before it (the published profile, or nothing: a newcomer starts as a prospect).

**Taste shift** (a simple, explainable rule; ``TasteRule``): the published profile's favourite
categories (second level of the path, each with a share of at least ``baseline_share`` of their
published ``category_affinity``, and their ``top_category``) are the baseline. The live mix is
what the person did since the last build: each category-bearing view counts 0.25, each
purchased line 1 (as ``segone.models.taste``). A shift fires when there are at least
``min_signals`` signals, the live top category is not in the baseline, and it holds at least
``min_share`` of the live mix; once per shift: not again while the same new top is the one last
reported. A person without a published baseline has no taste to shift from.

Transition payloads carry segment, stage and category names only: no personal data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import ibis.expr.datatypes as dt

from segone.live.aggregate import iso
from segone.live.profile import PROFILE_TYPES
from segone.segments.builtin import BuiltinSettings, builtin_catalogue
from segone.segments.rules import Catalogue, events_used, load_catalogue
from segone.segments.rules.codegen import compiled

ENTERED = "segment_entered"
LEFT = "segment_left"
STAGE = "stage_changed"
TASTE = "taste_shift"


@dataclass(frozen=True)
class Transition:
    person_id: str
    kind: str  # segment_entered, segment_left, stage_changed, taste_shift
    ts: datetime
    segment: str | None = None
    from_: str | None = None  # stage or category before ("from" in payloads)
    to: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        """The webhook payload / journey detail: names and numbers only."""
        return {
            "kind": self.kind,
            "segment": self.segment,
            "from": self.from_,
            "to": self.to,
            "ts": iso(self.ts),
            "detail": dict(self.detail),
        }


@dataclass(frozen=True)
class TasteRule:
    min_signals: int = 5
    min_share: float = 0.5
    baseline_share: float = 0.2


@dataclass(frozen=True)
class TasteInput:
    """``segone.live.profile.taste_input``: live mix, its number of signals, published shares."""

    mix: Mapping[str, float]
    signals: int
    baseline: Mapping[str, float]


def live_catalogue(
    files: Sequence[str | Path] = (), builtin: BuiltinSettings | None = None
) -> Catalogue:
    """The segments the batch uses (built-in ones with ``[segments]`` thresholds, then the
    project's segment files), typed by ``PROFILE_TYPES``: no warehouse needed."""
    attrs = {c: dt.dtype(t) for c, t in PROFILE_TYPES.items()}
    return load_catalogue(list(files), attrs, base=builtin_catalogue(attrs, builtin))


def event_names(catalogue: Catalogue) -> frozenset[str]:
    """The event names the catalogue's ``event:`` conditions count (only these need loading)."""
    return frozenset(d.event for seg in catalogue for d in events_used(seg.rule, catalogue))


def members(
    view: Mapping[str, Any],
    catalogue: Catalogue,
    events: Sequence[Mapping[str, Any]],
    now: datetime,
) -> set[str]:
    """The names of the catalogue's real-time segments the profile belongs to."""
    return compiled(catalogue).members(view, events, now)


def shifted_to(taste: TasteInput | None, rule: TasteRule = TasteRule()) -> str | None:
    """The category the person's taste has moved to, or None (see the module doc)."""
    if taste is None or taste.signals < rule.min_signals or not taste.mix:
        return None
    base = {c for c, s in taste.baseline.items() if s >= rule.baseline_share}
    if not base:
        return None
    total = sum(taste.mix.values())
    top, weight = min(taste.mix.items(), key=lambda kv: (-kv[1], kv[0]))
    if top in base or total <= 0 or weight / total < rule.min_share:
        return None
    return top


def changes(
    before_view: Mapping[str, Any],
    after_view: Mapping[str, Any],
    catalogue: Catalogue,
    events: Sequence[Mapping[str, Any]],
    now: datetime,
    *,
    person_id: str,
    remembered: Mapping[str, Any] | None = None,
    before_events: Sequence[Mapping[str, Any]] | None = None,
    taste: TasteInput | None = None,
    taste_rule: TasteRule = TasteRule(),
    after_segments: set[str] | None = None,
) -> list[Transition]:
    """Transitions from the state before (``remembered``, the document's ``rt``, else decided
    on ``before_view`` and ``before_events``) to the state of ``after_view`` and ``events``
    (``after_segments``: its segments, when the caller has decided them already)."""
    if remembered is not None:
        before = set(remembered.get("segments") or [])
        stage_before = remembered.get("stage")
        taste_before = remembered.get("taste")
    else:
        before = members(before_view, catalogue, before_events or (), now)
        stage_before, taste_before = before_view.get("lifecycle_stage"), None
    after = (
        members(after_view, catalogue, events, now) if after_segments is None else after_segments
    )
    out: list[Transition] = []
    if after != before:
        out += [Transition(person_id, ENTERED, now, segment=s) for s in sorted(after - before)]
        out += [Transition(person_id, LEFT, now, segment=s) for s in sorted(before - after)]
    stage_after = after_view.get("lifecycle_stage")
    if stage_before is not None and stage_after is not None and stage_after != stage_before:
        out.append(Transition(person_id, STAGE, now, from_=stage_before, to=stage_after))
    if taste is None:
        return out
    new_top = shifted_to(taste, taste_rule)
    if new_top is not None and new_top != taste_before:
        old = max(taste.baseline.items(), key=lambda kv: (kv[1], kv[0]))[0]
        total = sum(taste.mix.values())
        detail = {"share": round(taste.mix[new_top] / total, 3), "signals": taste.signals}
        out.append(Transition(person_id, TASTE, now, from_=old, to=new_top, detail=detail))
    return out


def remember(
    doc: dict[str, Any],
    after_view: Mapping[str, Any],
    catalogue: Catalogue,
    events: Sequence[Mapping[str, Any]],
    now: datetime,
    transitions: Sequence[Transition] = (),
    segments: set[str] | None = None,
) -> dict[str, Any]:
    """Store the state after the event in ``doc["rt"]`` (in place; returns ``doc``), so the next
    event compares with it (``segments``: the view's segments, when decided already)."""
    old = doc.get("rt") or {}
    if segments is None:
        segments = members(after_view, catalogue, events, now)
    taste = old.get("taste")
    if transitions:
        taste = next((t.to for t in reversed(transitions) if t.kind == TASTE), taste)
    doc["rt"] = {
        "segments": sorted(segments),
        "stage": after_view.get("lifecycle_stage"),
        "taste": taste,
    }
    return doc

"""One event for one person, end to end: the calls of ``segone.live`` in the order the Engine
makes them inside its write transaction, after ``identity.stitch`` and ``tx.insert_events``.

Pure: the caller loads the person's ``person`` and ``published`` documents, and writes back
``Update.doc`` and, for each transition, a journey entry and a webhook outbox row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from segone.live import profile, realtime
from segone.live.realtime import TasteInput, TasteRule, Transition
from segone.segments.lifecycle import LifecycleSettings
from segone.segments.rules import Catalogue


@dataclass
class Update:
    doc: dict[str, Any]  # the person document to store
    view: dict[str, Any]  # their profile after the event
    transitions: list[Transition] = field(default_factory=list)


def update(
    published: Mapping[str, Any] | None,
    doc: dict[str, Any] | None,
    msg: Mapping[str, Any],
    seq: int,
    now: datetime,
    *,
    person_id: str,
    catalogue: Catalogue,
    lifecycle: LifecycleSettings | None = None,
    median_gap_days: float | None = None,
    identifiers: Sequence[str] | None = None,
    taste_rule: TasteRule = TasteRule(),
) -> Update:
    """Apply ``msg`` (stored as ``seq``) to the person's document and say what changed."""
    cursor = profile.cursor_of(published)
    if doc:
        doc = profile.rebase(doc, cursor)
    kw: dict[str, Any] = {
        "person_id": person_id,
        "identifiers": identifiers,
        "lifecycle": lifecycle or LifecycleSettings(),
        "median_gap_days": median_gap_days,
    }
    names = _event_names(catalogue)
    remembered = (doc or {}).get("rt")
    before = profile.view(published, doc, now, **kw)
    # the state before is needed only for a person without a remembered one
    before_events = profile.rule_events(published, doc, names) if names and not remembered else []
    doc = profile.apply_event(doc, msg, seq, now)
    after = profile.view(published, doc, now, **kw)
    events = profile.rule_events(published, doc, names) if names else []
    segments = realtime.members(after, catalogue, events, now)
    mix, signals, baseline = profile.taste_input(published, doc)
    out = realtime.changes(
        before,
        after,
        catalogue,
        events,
        now,
        person_id=person_id,
        remembered=remembered,
        before_events=before_events,
        taste=TasteInput(mix, signals, baseline),
        taste_rule=taste_rule,
        after_segments=segments,
    )
    realtime.remember(doc, after, catalogue, events, now, out, segments)
    return Update(doc, after, out)


_NAMES: dict[int, tuple[Catalogue, frozenset[str]]] = {}


def _event_names(catalogue: Catalogue) -> frozenset[str]:
    """``realtime.event_names``, remembered per catalogue object (they are rebuilt, not edited,
    when a build publishes)."""
    hit = _NAMES.get(id(catalogue))
    if hit is None or hit[0] is not catalogue:
        if len(_NAMES) > 8:
            _NAMES.clear()
        hit = _NAMES[id(catalogue)] = (catalogue, realtime.event_names(catalogue))
    return hit[1]

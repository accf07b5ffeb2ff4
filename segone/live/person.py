"""One event for one person, end to end: the calls of ``segone.live`` in the order the Engine
makes them inside its write transaction, after ``identity.stitch`` and ``tx.events.insert``.

Pure: the caller loads the person's ``person`` and ``published`` documents, and writes back
``Update.doc`` and, for each transition, a journey entry and a webhook outbox row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from segone.live import profile, realtime
from segone.live.realtime import TasteInput, TasteRule, Transition
from segone.segments.lifecycle import LifecycleSettings
from segone.segments.rules import Catalogue, codegen


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
    if doc:
        # the records the build has read are dropped when it published the person's recent
        # events for rules (``_events``, as ``segone publish`` does)
        drop = published is not None and "_events" in published
        doc = profile.rebase(doc, profile.cursor_of(published), drop_records=drop)
    lifecycle = lifecycle or LifecycleSettings()
    compiled = codegen.compiled(catalogue)
    names = compiled.names
    # events older than the longest window of the catalogue's event conditions count for none
    horizon = compiled.horizon_days
    since = None if horizon is None else now - timedelta(days=horizon)
    remembered = (doc or {}).get("rt")
    kw: dict[str, Any] = {
        "person_id": person_id,
        "identifiers": identifiers,
        "lifecycle": lifecycle,
        "median_gap_days": median_gap_days,
    }
    # the state before is needed only for a person without a remembered one (``changes``
    # compares with ``remembered`` whenever there is one)
    before: dict[str, Any] = {}
    before_events: list[dict[str, Any]] = []
    if remembered is None:
        before = profile.view(published, doc, now, **kw)
        if names:
            before_events = profile.rule_events(published, doc, names, after=since)
    doc = profile.apply_event(doc, msg, seq, now)
    after = profile.view(published, doc, now, **kw)
    events = profile.rule_events(published, doc, names, after=since) if names else []
    segments = compiled.members(after, events, now)
    # a taste shifts only from a published baseline, on enough live signals (``shifted_to``)
    taste = None
    if published and profile.taste_signals(published, doc) >= taste_rule.min_signals:
        taste = TasteInput(*profile.taste_input(published, doc))
    out = realtime.changes(
        before,
        after,
        catalogue,
        events,
        now,
        person_id=person_id,
        remembered=remembered,
        before_events=before_events,
        taste=taste,
        taste_rule=taste_rule,
        after_segments=segments,
    )
    realtime.remember(doc, after, catalogue, events, now, out, segments)
    return Update(doc, after, out)

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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import ibis.expr.datatypes as dt

from segone.live.aggregate import iso
from segone.live.profile import PROFILE_TYPES
from segone.segments.builtin import BuiltinSettings, builtin_catalogue
from segone.segments.rules import (
    AllOf,
    AnyOf,
    Catalogue,
    Cmp,
    Did,
    InSegment,
    Not,
    Rule,
    Segment,
    count_events,
    evaluate,
    events_used,
    load_catalogue,
)

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


# -- the catalogue compiled for one profile at a time ------------------------------------------
# ``segone.segments.rules.evaluate`` walks a rule tree with isinstance tests on every call and
# decides a referenced segment again wherever it is referenced. The server decides every
# segment on every event, so a catalogue is turned once into one Python function that decides
# each segment once, in an order where a segment comes after those it refers to (each is
# decided at the top level anyway). Conditions keep ``evaluate``'s meaning and short-circuit
# order: values of the common types (None, bool, int, float, str; lists for ``contains``) are
# decided inline exactly as ``rules._evaluate_cmp`` decides them, anything else is handed to
# ``evaluate``. Rule values and names reach the function as constants, never as source text.
# A catalogue it cannot order (a cycle) or with segments that are not real-time is decided by
# ``evaluate`` as before.

_MISSING_TEXT = frozenset(("NaT", "<NA>"))  # strings ``rules._missing`` takes for a missing value
_OPERATORS = {"eq": "==", "ne": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
Members = Callable[[Mapping[str, Any], Sequence[Mapping[str, Any]], datetime], set[str]]


@dataclass(frozen=True)
class CompiledCatalogue:
    """A catalogue's real-time segments as one function of (profile, events, now)."""

    catalogue: Catalogue
    segments: list[tuple[str, Segment]]  # the catalogue's content when compiled
    members: Members  # the names of the segments a profile belongs to
    names: frozenset[str]  # ``event_names``
    # the longest ``within_days`` of its event conditions: events before that count for none
    # of them (None when one counts events ever, or there are none)
    horizon_days: float | None = None


_COMPILED: dict[int, CompiledCatalogue] = {}


def compiled(catalogue: Catalogue) -> CompiledCatalogue:
    """``catalogue`` compiled, remembered per catalogue object (a build's publish makes a new
    one; one that ``Catalogue.add`` grew is compiled again)."""
    hit = _COMPILED.get(id(catalogue))
    if (
        hit is None
        or hit.catalogue is not catalogue
        or len(hit.segments) != len(catalogue.segments)
    ):
        segments = list(catalogue.segments.items())
        if len(_COMPILED) > 8:
            _COMPILED.clear()
        fn = _generate(catalogue, segments) or _evaluator(catalogue)
        dids = [d for seg in catalogue for d in events_used(seg.rule, catalogue)]
        horizon = None
        if dids and all(d.within_days is not None for d in dids):
            horizon = max(float(d.within_days) for d in dids if d.within_days is not None)
        hit = CompiledCatalogue(catalogue, segments, fn, event_names(catalogue), horizon)
        _COMPILED[id(catalogue)] = hit
    return hit


def _evaluator(catalogue: Catalogue) -> Members:
    """``members`` by ``rules.evaluate``, segment by segment."""

    def members(
        view: Mapping[str, Any], events: Sequence[Mapping[str, Any]], now: datetime
    ) -> set[str]:
        return {
            seg.name
            for seg in catalogue
            if seg.realtime and evaluate(seg.rule, view, events=events, now=now, cat=catalogue)
        }

    return members


def _refs(rule: Rule) -> list[str]:
    if isinstance(rule, InSegment):
        return [rule.name]
    if isinstance(rule, AllOf | AnyOf):
        return [n for i in rule.items for n in _refs(i)]
    if isinstance(rule, Not):
        return _refs(rule.item)
    return []


def _generate(catalogue: Catalogue, segments: list[tuple[str, Segment]]) -> Members | None:
    if not all(seg.realtime for _, seg in segments):
        return None
    order: list[str] = []  # segment keys, each after those it refers to
    state: dict[str, int] = {}
    keys = dict(segments)

    def visit(key: str) -> bool:
        if state.get(key) == 2:
            return True
        if state.get(key) == 1 or key not in keys:  # a cycle, or an unknown segment
            return False
        state[key] = 1
        if not all(visit(r) for r in _refs(keys[key].rule)):
            return False
        state[key] = 2
        order.append(key)
        return True

    if not all(visit(key) for key, _ in segments):
        return None
    consts: dict[str, Any] = {
        "_evaluate": evaluate,
        "_count": count_events,
        "_M": _MISSING_TEXT,
        "_cat": catalogue,
    }
    local = {key: f"s{k}" for k, key in enumerate(order)}

    def const(value: Any) -> str:
        name = f"_c{len(consts)}"
        consts[name] = value
        return name

    def expr(rule: Rule) -> str:
        if isinstance(rule, AllOf | AnyOf):
            if not rule.items:  # all([]) / any([]), as evaluate decides them
                return "True" if isinstance(rule, AllOf) else "False"
            glue = " and " if isinstance(rule, AllOf) else " or "
            return "(" + glue.join(expr(i) for i in rule.items) + ")"
        if isinstance(rule, Not):
            return f"(not {expr(rule.item)})"
        if isinstance(rule, InSegment):
            return local[rule.name]
        if isinstance(rule, Did):
            d = const(rule)
            n = f"_count({d}, ev, now)"
            if rule.max is None:
                return f"({n} >= {const(rule.min)})"
            return f"((n := {n}) >= {const(rule.min)} and n <= {const(rule.max)})"
        if isinstance(rule, Cmp):
            return _cmp_expr(rule, const)
        return f"_evaluate({const(rule)}, p, events=ev, now=now, cat=_cat)"

    lines = ["def members(p, ev, now):", "    get = p.get"]
    for key in order:
        lines.append(f"    {local[key]} = {expr(keys[key].rule)}")
    lines.append("    out = set()")
    for key, seg in segments:
        lines.append(f"    if {local[key]}:")
        lines.append(f"        out.add({const(seg.name)})")
    lines.append("    return out")
    namespace = dict(consts)
    exec(compile("\n".join(lines), "<segone.live.realtime catalogue>", "exec"), namespace)
    return namespace["members"]


def _cmp_expr(c: Cmp, const: Callable[[Any], str]) -> str:
    """``rules._evaluate_cmp(c, p.get(attribute))`` as an expression (``v``, ``t`` scratch):
    None, NaN, "NaT" and "<NA>" are missing, false for every operator but is_null."""
    v = f"(v := get({const(c.attribute)}))"
    slow = f"_evaluate({const(c)}, p)"
    value = const(c.value)
    if c.op == "is_null":
        if c.value:  # missing?
            return (
                f"(True if {v} is None else (v != v) if (t := type(v)) is float else "
                f"False if t is int or t is bool else (v in _M) if t is str else {slow})"
            )
        return (
            f"(False if {v} is None else (v == v) if (t := type(v)) is float else "
            f"True if t is int or t is bool else (v not in _M) if t is str else {slow})"
        )
    if c.op == "contains":
        return f"(False if {v} is None else ({value} in v) if type(v) is list else {slow})"
    if c.op in ("in", "not_in"):
        test = f"v {'not in' if c.op == 'not_in' else 'in'} {value}"
    elif c.op in _OPERATORS:
        test = f"v {_OPERATORS[c.op]} {value}"
    else:
        return slow
    return (
        f"(False if {v} is None else ({test}) if (t := type(v)) is int or t is bool else "
        f"(v == v and {test}) if t is float else (v not in _M and {test}) if t is str else "
        f"{slow})"
    )


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

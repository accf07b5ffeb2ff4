"""The hot-path target: a whole catalogue turned into one generated Python function of
(profile, events, now) that decides each real-time segment once.

``segone.segments.rules.python.evaluate`` walks a rule tree on every call and decides a
referenced segment again wherever it is referenced. The server decides every segment on every
event (``segone.live.realtime``), so a catalogue is turned once into one Python function that
decides each segment once, in an order where a segment comes after those it refers to (each is
decided at the top level anyway). Conditions keep ``evaluate``'s meaning and short-circuit
order: values of the common types (None, bool, int, float, str; lists for ``contains``) are
decided inline exactly as ``python.evaluate_cmp`` decides them, anything else is handed to
``evaluate``. Rule values and names reach the function as constants, never as source text.
A catalogue it cannot order (a cycle) or with segments that are not real-time is decided by
``evaluate`` as before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from segone.segments.rules.ast import (
    MISSING_TEXT,
    SYMBOLS,
    AllOf,
    AnyOf,
    Catalogue,
    Cmp,
    Did,
    InSegment,
    Not,
    Rule,
    Segment,
    events_used,
    references,
)
from segone.segments.rules.python import count_events, evaluate

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
        names = frozenset(d.event for d in dids)
        hit = CompiledCatalogue(catalogue, segments, fn, names, horizon)
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
        if not all(visit(r) for r in references(keys[key].rule)):
            return False
        state[key] = 2
        order.append(key)
        return True

    if not all(visit(key) for key, _ in segments):
        return None
    consts: dict[str, Any] = {
        "_evaluate": evaluate,
        "_count": count_events,
        "_M": MISSING_TEXT,
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
    exec(compile("\n".join(lines), "<segone.segments.rules.codegen catalogue>", "exec"), namespace)
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
    elif c.op in SYMBOLS:
        test = f"v {SYMBOLS[c.op]} {value}"
    else:
        return slow
    return (
        f"(False if {v} is None else ({test}) if (t := type(v)) is int or t is bool else "
        f"(v == v and {test}) if t is float else (v not in _M and {test}) if t is str else "
        f"{slow})"
    )

"""The batch target: a rule compiled to an Ibis boolean over the profiles table."""

from __future__ import annotations

import hashlib
from functools import singledispatch

import ibis
import ibis.expr.types as ir

from segone.segments.rules.ast import (
    COMPARE,
    AllOf,
    AnyOf,
    Catalogue,
    Cmp,
    Did,
    InSegment,
    Not,
    Rule,
    RuleError,
)


def event_column(d: Did) -> str:
    days = "ever" if d.within_days is None else f"{d.within_days:g}d"
    safe = "".join(ch if ch.isalnum() else "_" for ch in d.event.lower())
    digest = hashlib.md5(d.event.encode()).hexdigest()[:6]  # names differing only in punctuation
    return f"_ev_{safe}_{days}_{digest}"


def compile_rule(rule: Rule, t: ibis.Table, cat: Catalogue | None = None) -> ir.BooleanValue:
    """A boolean over ``t``: profiles with the event-count columns of ``events_used``."""
    return _visit(rule, t, cat)


@singledispatch
def _visit(rule: Rule, t: ibis.Table, cat: Catalogue | None) -> ir.BooleanValue:
    raise RuleError(f"not a rule: {type(rule).__name__}")


@_visit.register
def _(rule: AllOf, t: ibis.Table, cat: Catalogue | None) -> ir.BooleanValue:
    return ibis.and_(*[_visit(i, t, cat) for i in rule.items])


@_visit.register
def _(rule: AnyOf, t: ibis.Table, cat: Catalogue | None) -> ir.BooleanValue:
    return ibis.or_(*[_visit(i, t, cat) for i in rule.items])


@_visit.register
def _(rule: Not, t: ibis.Table, cat: Catalogue | None) -> ir.BooleanValue:
    return ~_visit(rule.item, t, cat)


@_visit.register
def _(rule: InSegment, t: ibis.Table, cat: Catalogue | None) -> ir.BooleanValue:
    if cat is None:
        raise RuleError(f"segment {rule.name!r} referenced without a catalogue")
    return _visit(cat[rule.name].rule, t, cat)


@_visit.register
def _(rule: Did, t: ibis.Table, cat: Catalogue | None) -> ir.BooleanValue:
    n = t[event_column(rule)].fill_null(0)
    cond = n >= rule.min
    if rule.max is not None:
        cond = cond & (n <= rule.max)
    return cond


@_visit.register
def _(c: Cmp, t: ibis.Table, cat: Catalogue | None) -> ir.BooleanValue:
    col = t[c.attribute]
    v = c.value
    if c.op == "is_null":
        return col.isnull() if v else col.notnull()
    if c.op == "contains":
        expr = col.contains(v)
    elif c.op == "in":
        expr = col.isin(v)
    elif c.op == "not_in":
        expr = ~col.isin(v)
    else:
        expr = COMPARE[c.op](col, v)
    return (col.notnull() & expr).fill_null(False)

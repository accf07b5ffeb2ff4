"""The real-time target: a rule decided for one profile held in memory (and its recent
events), with the batch's meaning: a comparison with a missing value is false, never
"unknown", so ``not`` means the same on both paths."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from functools import singledispatch
from typing import Any

from segone.segments.rules.ast import (
    COMPARE,
    MISSING_TEXT,
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


def evaluate(
    rule: Rule,
    profile: Mapping[str, Any],
    *,
    events: Sequence[Mapping[str, Any]] = (),
    now: datetime | None = None,
    cat: Catalogue | None = None,
) -> bool:
    """Decide ``rule`` for one profile (a mapping of attributes) and its recent ``events``
    (mappings with ``event`` or ``name`` and a ``timestamp``)."""
    return _visit(rule, _Context(profile, events, now, cat))


class _Context:
    __slots__ = ("cat", "events", "now", "profile")

    def __init__(
        self,
        profile: Mapping[str, Any],
        events: Sequence[Mapping[str, Any]],
        now: datetime | None,
        cat: Catalogue | None,
    ) -> None:
        self.profile, self.events, self.now, self.cat = profile, events, now, cat


@singledispatch
def _visit(rule: Rule, ctx: _Context) -> bool:
    raise RuleError(f"not a rule: {type(rule).__name__}")


@_visit.register
def _(rule: AllOf, ctx: _Context) -> bool:
    return all(_visit(i, ctx) for i in rule.items)


@_visit.register
def _(rule: AnyOf, ctx: _Context) -> bool:
    return any(_visit(i, ctx) for i in rule.items)


@_visit.register
def _(rule: Not, ctx: _Context) -> bool:
    return not _visit(rule.item, ctx)


@_visit.register
def _(rule: InSegment, ctx: _Context) -> bool:
    if ctx.cat is None:
        raise RuleError(f"segment {rule.name!r} referenced without a catalogue")
    return _visit(ctx.cat[rule.name].rule, ctx)


@_visit.register
def _(rule: Did, ctx: _Context) -> bool:
    n = count_events(rule, ctx.events, ctx.now)
    return n >= rule.min and (rule.max is None or n <= rule.max)


@_visit.register
def _(rule: Cmp, ctx: _Context) -> bool:
    return evaluate_cmp(rule, ctx.profile.get(rule.attribute))


def count_events(d: Did, events: Sequence[Mapping[str, Any]], now: datetime | None) -> int:
    since = None if d.within_days is None or now is None else now - timedelta(days=d.within_days)
    n = 0
    for e in events:
        name = e.get("event") or e.get("name")
        if name != d.event:
            continue
        ts = e.get("timestamp")
        if since is not None and (ts is None or ts <= since or (now is not None and ts > now)):
            continue
        n += 1
    return n


def missing(v: Any) -> bool:
    """None, NaN and pandas' missing spellings are missing values."""
    if v is None:
        return True
    if isinstance(v, float) and math.isnan(v):
        return True
    return str(v) in MISSING_TEXT


def evaluate_cmp(c: Cmp, v: Any) -> bool:
    """One comparison on one value."""
    if c.op == "is_null":
        return missing(v) if c.value else not missing(v)
    if missing(v) if not hasattr(v, "__len__") or isinstance(v, str) else False:
        return False
    if c.op == "contains":
        return v is not None and c.value in list(v)
    if c.op == "in":
        return v in c.value
    if c.op == "not_in":
        return v not in c.value
    return bool(COMPARE[c.op](v, c.value))


# older names of the helpers
_missing = missing
_evaluate_cmp = evaluate_cmp

"""The rule language's tree: one node type per construct, the catalogue of named segments,
and what every target needs to know of a rule (its comparisons, what counts as missing, the
segments and events it refers to). Written once; the targets (``ibis``, ``python``,
``codegen``) and the ``parser`` build on it."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from segone.exceptions import RuleError

OPS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains", "is_null")
ORDERED = ("gt", "gte", "lt", "lte")
#: The comparisons, as functions (they build Ibis expressions and decide Python values alike)
#: and as the Python operators generated code writes.
COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}
SYMBOLS = {"eq": "==", "ne": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
#: Text that stands for a missing value (pandas' spellings of a null timestamp or value).
MISSING_TEXT = frozenset(("NaT", "<NA>"))


@dataclass(frozen=True)
class Cmp:
    attribute: str
    op: str
    value: Any


@dataclass(frozen=True)
class AllOf:
    items: tuple[Any, ...]


@dataclass(frozen=True)
class AnyOf:
    items: tuple[Any, ...]


@dataclass(frozen=True)
class Not:
    item: Any


@dataclass(frozen=True)
class InSegment:
    name: str


@dataclass(frozen=True)
class Did:
    event: str
    min: int = 1
    max: int | None = None
    within_days: float | None = None


Rule = Cmp | AllOf | AnyOf | Not | InSegment | Did


@dataclass(frozen=True)
class Segment:
    name: str
    rule: Rule
    description: str = ""
    source: str = ""  # file:line it was defined at

    @property
    def realtime(self) -> bool:
        """Every segment can be decided on one profile in memory."""
        return True


@dataclass
class Catalogue:
    """Named segments; rules may refer to each other (without cycles)."""

    segments: dict[str, Segment] = field(default_factory=dict)

    def add(self, seg: Segment) -> None:
        if seg.name in self.segments:
            raise RuleError(
                f"{seg.source}: segment {seg.name!r} is defined twice "
                f"(first at {self.segments[seg.name].source})"
            )
        self.segments[seg.name] = seg

    def __getitem__(self, name: str) -> Segment:
        return self.segments[name]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.segments.values())

    def __len__(self) -> int:
        return len(self.segments)


def references(rule: Rule) -> list[str]:
    """The names of the segments a rule refers to directly."""
    if isinstance(rule, InSegment):
        return [rule.name]
    if isinstance(rule, AllOf | AnyOf):
        return [n for i in rule.items for n in references(i)]
    if isinstance(rule, Not):
        return references(rule.item)
    return []


def events_used(rule: Rule, cat: Catalogue | None = None) -> list[Did]:
    """Every event condition in a rule (following segment references)."""
    if isinstance(rule, Did):
        return [rule]
    if isinstance(rule, AllOf | AnyOf):
        return [d for i in rule.items for d in events_used(i, cat)]
    if isinstance(rule, Not):
        return events_used(rule.item, cat)
    if isinstance(rule, InSegment) and cat is not None:
        return events_used(cat[rule.name].rule, cat)
    return []


def describe(rule: Rule) -> str:
    """A rule in words, for people reading ``segone segments show``."""
    if isinstance(rule, AllOf):
        return "all of (" + "; ".join(describe(i) for i in rule.items) + ")"
    if isinstance(rule, AnyOf):
        return "any of (" + "; ".join(describe(i) for i in rule.items) + ")"
    if isinstance(rule, Not):
        return "not " + describe(rule.item)
    if isinstance(rule, InSegment):
        return f"in segment {rule.name}"
    if isinstance(rule, Did):
        times = f"at least {rule.min}" + (
            f" and at most {rule.max}" if rule.max is not None else ""
        )
        when = "" if rule.within_days is None else f" in the last {rule.within_days:g} days"
        return f"did {rule.event!r} {times} times{when}"
    words = {
        **SYMBOLS,
        "eq": "=",
        "in": "in",
        "not_in": "not in",
        "contains": "contains",
    }
    if rule.op == "is_null":
        return f"{rule.attribute} is {'unknown' if rule.value else 'known'}"
    return f"{rule.attribute} {words[rule.op]} {rule.value!r}"

"""The segment rule language: one definition, two evaluators.

A rule is a tree of conditions on profile attributes and on behaviour::

    name: hot_pricing_leads
    description: Pricing-page visitors who follow us on social and are an open CRM opportunity
    rule:
      all:
        - pricing_views_30d: {gte: 1}
        - social_follower: true
        - crm_stage: {in: [opportunity]}
        - not: {segment: churned_buyers}
        - event: {name: Pricing, min: 2, within_days: 14}

* ``ATTRIBUTE: VALUE`` is equality; ``ATTRIBUTE: {OP: VALUE}`` with OP one of eq, ne, gt, gte,
  lt, lte, in, not_in, contains (an element of a list attribute), is_null (true/false);
* ``all: [...]``, ``any: [...]``, ``not: CONDITION``;
* ``segment: NAME``: membership of another segment of the same catalogue;
* ``event: {name, min, max, within_days}``: how often the person did an event (a track event's
  name or a page/screen name) in the last ``within_days`` days (default: ever).

``compile_rule`` turns a rule into an Ibis boolean over the ``profiles`` table (batch);
``evaluate`` decides it for one profile held in memory (real time). A comparison with a missing
value is false on both paths (never "unknown"), so ``not`` means the same thing on both.
"""

from __future__ import annotations

import difflib
import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
import yaml

from segone.exceptions import SegoneError

OPS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains", "is_null")
ORDERED = ("gt", "gte", "lt", "lte")


class RuleError(SegoneError):
    """A segment definition is invalid; the message names the file, the line and the problem."""


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


# -- parsing -------------------------------------------------------------------------------------
def _where(src: str, node: yaml.Node) -> str:
    return f"{src}:{node.start_mark.line + 1}"


def _plain(node: yaml.Node) -> Any:
    return yaml.safe_load(yaml.serialize(node))


def parse_rule_node(node: yaml.Node, src: str, attributes: Mapping[str, dt.DataType]) -> Rule:
    at = _where(src, node)
    if isinstance(node, yaml.SequenceNode):  # a bare list means "all of"
        return AllOf(tuple(parse_rule_node(n, src, attributes) for n in node.value))
    if not isinstance(node, yaml.MappingNode):
        raise RuleError(
            f"{at}: a condition must be a mapping like 'orders: {{gte: 3}}', got {_plain(node)!r}"
        )
    if len(node.value) != 1:
        keys = [k.value for k, _ in node.value]
        raise RuleError(f"{at}: one condition per list item, got {keys}; wrap several in 'all:'")
    ((knode, vnode),) = node.value
    key = knode.value
    if key in ("all", "any"):
        if not isinstance(vnode, yaml.SequenceNode) or not vnode.value:
            raise RuleError(f"{_where(src, vnode)}: '{key}' needs a non-empty list of conditions")
        items = tuple(parse_rule_node(n, src, attributes) for n in vnode.value)
        return AllOf(items) if key == "all" else AnyOf(items)
    if key == "not":
        return Not(parse_rule_node(vnode, src, attributes))
    if key == "segment":
        if not isinstance(vnode, yaml.ScalarNode):
            raise RuleError(f"{_where(src, vnode)}: 'segment' takes a segment name")
        return InSegment(str(vnode.value))
    if key == "event":
        return _parse_event(vnode, src)
    return _parse_cmp(key, vnode, src, attributes)


def _parse_event(vnode: yaml.Node, src: str) -> Did:
    at = _where(src, vnode)
    spec = _plain(vnode)
    if isinstance(spec, str):
        return Did(spec)
    if not isinstance(spec, dict) or "name" not in spec:
        raise RuleError(f"{at}: 'event' takes a name or {{name, min, max, within_days}}")
    unknown = set(spec) - {"name", "min", "max", "within_days"}
    if unknown:
        raise RuleError(
            f"{at}: unknown event option(s) {sorted(unknown)}; known: name, min, max, within_days"
        )
    try:
        did = Did(
            str(spec["name"]),
            int(spec.get("min", 1)),
            None if spec.get("max") is None else int(spec["max"]),
            None if spec.get("within_days") is None else float(spec["within_days"]),
        )
    except (TypeError, ValueError):
        raise RuleError(
            f"{at}: event min/max must be whole numbers, within_days a number"
        ) from None
    if (
        did.min < 0
        or (did.max is not None and did.max < did.min)
        or (did.within_days is not None and did.within_days <= 0)
    ):
        raise RuleError(f"{at}: need 0 <= min <= max and within_days > 0")
    return did


def _parse_cmp(attr: str, vnode: yaml.Node, src: str, attributes: Mapping[str, dt.DataType]) -> Cmp:
    at = _where(src, vnode)
    if attr not in attributes:
        close = difflib.get_close_matches(attr, list(attributes), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise RuleError(f"{at}: unknown attribute {attr!r}{hint}; see docs/profiles.md")
    spec = _plain(vnode)
    if isinstance(spec, dict):
        if len(spec) != 1:
            raise RuleError(f"{at}: one operator per condition, got {sorted(spec)}")
        ((op, value),) = spec.items()
    else:
        op, value = "eq", spec
    if op not in OPS:
        raise RuleError(f"{at}: unknown operator {op!r}; use one of {', '.join(OPS)}")
    cmp = Cmp(attr, op, value)
    _check_types(cmp, attributes[attr], at)
    return cmp


def _check_types(c: Cmp, t: dt.DataType, at: str) -> None:
    what = f"{c.attribute} ({t})"
    if t.is_timestamp() or t.is_map() or t.is_json() or t.is_struct():
        raise RuleError(
            f"{at}: {what} cannot be compared directly; use a derived number such as "
            "recency_days or days_since_seen"
        )
    if c.op == "is_null":
        if not isinstance(c.value, bool):
            raise RuleError(f"{at}: is_null takes true or false")
        return
    if c.op == "contains":
        if not t.is_array():
            raise RuleError(f"{at}: 'contains' needs a list attribute; {what} is not one")
        values = [c.value]
    elif c.op in ("in", "not_in"):
        if not isinstance(c.value, list) or not c.value:
            raise RuleError(f"{at}: '{c.op}' takes a non-empty list")
        values = list(c.value)
    else:
        values = [c.value]
    if t.is_array():
        if c.op != "contains" and c.op != "is_null":
            raise RuleError(f"{at}: {what} is a list; use 'contains'")
        t = t.value_type
    for v in values:
        if t.is_boolean() and not isinstance(v, bool):
            raise RuleError(f"{at}: {what} is true/false, got {v!r}")
        if t.is_numeric() and (isinstance(v, bool) or not isinstance(v, int | float)):
            raise RuleError(f"{at}: {what} is a number, got {v!r}")
        if t.is_string() and not isinstance(v, str):
            raise RuleError(f"{at}: {what} is text, got {v!r} (quote it)")
    if c.op in ORDERED and not t.is_numeric():
        raise RuleError(f"{at}: '{c.op}' needs a number attribute; {what} is not one")


def load_catalogue(
    paths: Sequence[str | Path],
    attributes: Mapping[str, dt.DataType],
    base: Catalogue | None = None,
) -> Catalogue:
    """Segments from YAML files: a list of ``{name, description, rule}`` or ``segments: [...]``.

    ``base`` segments (the built-in ones) come first; a file may redefine one of them.
    """
    cat = Catalogue()
    parsed: list[Segment] = []
    for path in paths:
        path = Path(path)
        try:
            root = yaml.compose(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f":{mark.line + 1}" if mark else ""
            raise RuleError(
                f"{path}{line}: not valid YAML ({getattr(exc, 'problem', exc)})"
            ) from None
        except OSError as exc:
            raise RuleError(f"cannot read {path}: {exc.strerror}") from None
        if root is None:
            continue
        if isinstance(root, yaml.MappingNode):
            keys = {k.value: v for k, v in root.value}
            root = keys.get("segments", root)
        items = root.value if isinstance(root, yaml.SequenceNode) else [root]
        for item in items:
            parsed.append(_parse_segment(item, str(path), attributes))
    mine = {seg.name for seg in parsed}
    for seg in base or []:  # built-in segments, unless a file defines one of the same name
        if seg.name not in mine:
            cat.add(seg)
    for seg in parsed:
        cat.add(seg)
    _check_references(cat)
    return cat


def _parse_segment(node: yaml.Node, src: str, attributes: Mapping[str, dt.DataType]) -> Segment:
    at = _where(src, node)
    if not isinstance(node, yaml.MappingNode):
        raise RuleError(f"{at}: a segment is a mapping with name, description and rule")
    fields = {k.value: v for k, v in node.value}
    unknown = set(fields) - {"name", "description", "rule"}
    if unknown:
        raise RuleError(
            f"{at}: unknown key(s) {sorted(unknown)}; a segment has name, description, rule"
        )
    if "name" not in fields or "rule" not in fields:
        raise RuleError(f"{at}: a segment needs a name and a rule")
    name = str(_plain(fields["name"]))
    if not name.replace("_", "").replace("-", "").isalnum():
        raise RuleError(f"{at}: segment names use letters, digits, '_' and '-'; got {name!r}")
    desc = str(_plain(fields["description"])) if "description" in fields else ""
    return Segment(name, parse_rule_node(fields["rule"], src, attributes), desc, at)


def rule_from_obj(obj: Any, attributes: Mapping[str, dt.DataType], name: str = "rule") -> Rule:
    """A rule from Python data (the same shapes as YAML), for the Python API."""
    node = yaml.compose(yaml.safe_dump(obj))
    if node is None:
        raise RuleError(f"<{name}>: empty rule")
    return parse_rule_node(node, f"<{name}>", attributes)


def _check_references(cat: Catalogue) -> None:
    def refs(r: Rule) -> list[str]:
        if isinstance(r, InSegment):
            return [r.name]
        if isinstance(r, AllOf | AnyOf):
            return [n for i in r.items for n in refs(i)]
        if isinstance(r, Not):
            return refs(r.item)
        return []

    for seg in cat:
        for n in refs(seg.rule):
            if n not in cat.segments:
                raise RuleError(
                    f"{seg.source}: segment {seg.name!r} refers to unknown segment {n!r}"
                )
    state: dict[str, int] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise RuleError(
                f"{cat[name].source}: segments refer to each other in a cycle: "
                f"{' -> '.join([*path, name])}"
            )
        state[name] = 1
        for n in refs(cat[name].rule):
            visit(n, [*path, name])
        state[name] = 2

    for seg in cat:
        visit(seg.name, [])


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


# -- batch: compile to Ibis ----------------------------------------------------------------------
def event_column(d: Did) -> str:
    days = "ever" if d.within_days is None else f"{d.within_days:g}d"
    safe = "".join(ch if ch.isalnum() else "_" for ch in d.event.lower())
    digest = hashlib.md5(d.event.encode()).hexdigest()[:6]  # names differing only in punctuation
    return f"_ev_{safe}_{days}_{digest}"


def compile_rule(rule: Rule, t: ibis.Table, cat: Catalogue | None = None) -> ir.BooleanValue:
    """A boolean over ``t``: profiles with the event-count columns of ``events_used``."""
    if isinstance(rule, AllOf):
        return ibis.and_(*[compile_rule(i, t, cat) for i in rule.items])
    if isinstance(rule, AnyOf):
        return ibis.or_(*[compile_rule(i, t, cat) for i in rule.items])
    if isinstance(rule, Not):
        return ~compile_rule(rule.item, t, cat)
    if isinstance(rule, InSegment):
        if cat is None:
            raise RuleError(f"segment {rule.name!r} referenced without a catalogue")
        return compile_rule(cat[rule.name].rule, t, cat)
    if isinstance(rule, Did):
        n = t[event_column(rule)].fill_null(0)
        cond = n >= rule.min
        if rule.max is not None:
            cond = cond & (n <= rule.max)
        return cond
    return _compile_cmp(rule, t)


def _compile_cmp(c: Cmp, t: ibis.Table) -> ir.BooleanValue:
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
        expr = {
            "eq": col == v,
            "ne": col != v,
            "gt": col > v,
            "gte": col >= v,
            "lt": col < v,
            "lte": col <= v,
        }[c.op]
    return (col.notnull() & expr).fill_null(False)


# -- real time: evaluate on one profile ----------------------------------------------------------
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
    if isinstance(rule, AllOf):
        return all(evaluate(i, profile, events=events, now=now, cat=cat) for i in rule.items)
    if isinstance(rule, AnyOf):
        return any(evaluate(i, profile, events=events, now=now, cat=cat) for i in rule.items)
    if isinstance(rule, Not):
        return not evaluate(rule.item, profile, events=events, now=now, cat=cat)
    if isinstance(rule, InSegment):
        if cat is None:
            raise RuleError(f"segment {rule.name!r} referenced without a catalogue")
        return evaluate(cat[rule.name].rule, profile, events=events, now=now, cat=cat)
    if isinstance(rule, Did):
        n = count_events(rule, events, now)
        return n >= rule.min and (rule.max is None or n <= rule.max)
    return _evaluate_cmp(rule, profile.get(rule.attribute))


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


def _missing(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and math.isnan(v):
        return True
    return str(v) in ("NaT", "<NA>")


def _evaluate_cmp(c: Cmp, v: Any) -> bool:
    if c.op == "is_null":
        return _missing(v) if c.value else not _missing(v)
    if _missing(v) if not hasattr(v, "__len__") or isinstance(v, str) else False:
        return False
    if c.op == "contains":
        return v is not None and c.value in list(v)
    if c.op == "in":
        return v in c.value
    if c.op == "not_in":
        return v not in c.value
    ops = {
        "eq": lambda a, b: a == b,
        "ne": lambda a, b: a != b,
        "gt": lambda a, b: a > b,
        "gte": lambda a, b: a >= b,
        "lt": lambda a, b: a < b,
        "lte": lambda a, b: a <= b,
    }
    return bool(ops[c.op](v, c.value))


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
        "eq": "=",
        "ne": "!=",
        "gt": ">",
        "gte": ">=",
        "lt": "<",
        "lte": "<=",
        "in": "in",
        "not_in": "not in",
        "contains": "contains",
    }
    if rule.op == "is_null":
        return f"{rule.attribute} is {'unknown' if rule.value else 'known'}"
    return f"{rule.attribute} {words[rule.op]} {rule.value!r}"

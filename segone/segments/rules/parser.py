"""The rule language's parser: YAML segment files (and plain objects) into the tree of
``segone.segments.rules.ast``, type-checked against the profile attributes, with every error
naming its file and line."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ibis.expr.datatypes as dt
import yaml

from segone.segments.rules.ast import (
    OPS,
    ORDERED,
    AllOf,
    AnyOf,
    Catalogue,
    Cmp,
    Did,
    InSegment,
    Not,
    Rule,
    RuleError,
    Segment,
    references,
)
from segone.segments.vocabulary import check_rule


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
    check_rule(cmp, at, strict=True)  # lifecycle_stage: activ -> did you mean 'active'?
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
    for seg in cat:
        for n in references(seg.rule):
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
        for n in references(cat[name].rule):
            visit(n, [*path, name])
        state[name] = 2

    for seg in cat:
        visit(seg.name, [])

"""Rule values checked against what they can be: a typo is an error with a "did you mean".

A rule compares an attribute with a value; ``lifecycle_stage: activ`` is valid YAML and a valid
comparison, and it selects nobody, silently, forever. Two checks catch that:

* **closed vocabularies** (the values an attribute can ever take: lifecycle stages, channels)
  are checked when a rule is loaded (``check_rule``, called from the rule parser): a value
  outside one is an error, naming the closest;
* **the data's vocabulary** (the values present in the warehouse for text attributes with few
  distinct values, such as ``crm_stage``, and the event names) is checked where a warehouse is
  at hand (``segone segments list|show|preview``, ``data_vocabulary`` + ``check_catalogue``):
  a value absent from the data *and* close to one present (``"Gold "`` for ``"gold"``) is an
  error; a value merely absent, with nothing close, is accepted (it may arrive tomorrow).

The closest value is found with ``difflib`` (and case-insensitively), as attribute names are.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Collection, Iterator, Mapping
from typing import Any

from segone.exceptions import RuleError

# what build writes into profiles.channels (segone.pipeline.build) and the live profile too
CHANNELS = ("web", "email", "social", "store", "loyalty", "crm")

# a text attribute with more distinct values than this is free text, not a vocabulary
MAX_DATA_VALUES = 1000

EVENTS = "event"  # the key of event names in a vocabulary


def closed_vocabulary() -> dict[str, tuple[str, ...]]:
    """The attributes whose values are fixed by segone itself."""
    from segone.segments.lifecycle import STAGES

    return {"lifecycle_stage": tuple(STAGES), "channels": CHANNELS}


def closest(value: str, known: Collection[str]) -> str | None:
    """The known value ``value`` most likely meant (ignoring case first), or None."""
    by_case = {k.lower().strip(): k for k in known}
    if value.lower().strip() in by_case:
        return by_case[value.lower().strip()]
    close = difflib.get_close_matches(value, list(known), n=1, cutoff=0.6)
    if close:
        return close[0]
    close = difflib.get_close_matches(value.lower(), list(by_case), n=1, cutoff=0.6)
    return by_case[close[0]] if close else None


def comparisons(rule: Any) -> Iterator[Any]:
    """Every comparison (a node with ``attribute``, ``op`` and ``value``) and event condition
    (a node with ``event``) in ``rule``, walking any tree of dataclass nodes."""
    if isinstance(rule, list | tuple):
        for item in rule:
            yield from comparisons(item)
        return
    if not dataclasses.is_dataclass(rule) or isinstance(rule, type):
        return
    if (hasattr(rule, "attribute") and hasattr(rule, "op")) or hasattr(rule, "event"):
        yield rule
        return
    for f in dataclasses.fields(rule):
        yield from comparisons(getattr(rule, f.name))


def _values(node: Any) -> list[Any]:
    if node.op in ("in", "not_in") and isinstance(node.value, list | tuple):
        return list(node.value)
    if node.op in ("eq", "ne", "contains"):
        return [node.value]
    return []


def check_rule(
    rule: Any, at: str, vocabulary: Mapping[str, Collection[str]] | None = None, *, strict: bool
) -> None:
    """Raise ``RuleError`` for a value of ``rule`` that is not in ``vocabulary`` (default: the
    closed one). ``strict``: any unknown value is an error (closed vocabularies); otherwise
    only one close to a known value (the data's vocabulary)."""
    vocab = closed_vocabulary() if vocabulary is None else vocabulary
    for node in comparisons(rule):
        if hasattr(node, "event"):
            attribute, values = EVENTS, [node.event]
        else:
            attribute, values = node.attribute, _values(node)
        known = vocab.get(attribute)
        if not known:
            continue
        for v in values:
            if not isinstance(v, str) or v in known:
                continue
            guess = closest(v, known)
            if guess is None and not strict:
                continue
            what = "event" if attribute == EVENTS else attribute
            where = "" if strict else " in the data"
            hint = f"; did you mean {guess!r}?" if guess else ""
            shown = sorted(known)[:12]
            more = ", …" if len(known) > 12 else ""
            raise RuleError(
                f"{at}: {v!r} is not a value of {what}{where}{hint} "
                f"(known: {', '.join(shown)}{more})"
            )


def check_catalogue(cat: Any, vocabulary: Mapping[str, Collection[str]]) -> None:
    """``check_rule`` for every segment of ``cat`` against the data's ``vocabulary``."""
    for seg in cat.segments.values():
        check_rule(seg.rule, seg.source or seg.name, vocabulary, strict=False)


def data_vocabulary(wh: Any, max_values: int = MAX_DATA_VALUES) -> dict[str, set[str]]:
    """The values present in the warehouse: per text attribute of ``profiles`` (with at most
    ``max_values`` distinct values) and the event names (``"event"``)."""
    out: dict[str, set[str]] = {}
    tables = set(wh.tables())
    if "profiles" in tables:
        p = wh.table("profiles")
        for name, t in p.schema().items():
            if not t.is_string() or name == "customer_id":
                continue
            col = p[name]
            if int(wh.execute(col.nunique())) > max_values:
                continue
            vals = wh.execute(p.select(col).distinct())[name]
            out[name] = {str(v) for v in vals if isinstance(v, str)}
    if "events" in tables:
        import ibis

        e = wh.table("events")
        # the name rules match on (segone.segments.batch.customer_events)
        names = e.select(n=ibis.ifelse(e.type.isin(["page", "screen"]), e["name"], e.event))
        if int(wh.execute(names.n.nunique())) <= max_values:
            out[EVENTS] = {str(v) for v in wh.execute(names.distinct()).n if isinstance(v, str)}
    return out

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

One tree (``ast``), one ``parser``, and one visitor per target: ``ibis.compile_rule`` turns a
rule into an Ibis boolean over the ``profiles`` table (batch); ``python.evaluate`` decides it for
one profile held in memory (real time); ``codegen.compiled`` turns a whole catalogue into one
generated Python function (the server's hot path, ``segone.live.realtime``). A comparison with a
missing value is false on every target (never "unknown"), so ``not`` means the same thing on
all; ``tests/test_live_parity.py`` holds them to it.
"""

from segone.segments.rules.ast import (
    COMPARE,
    MISSING_TEXT,
    OPS,
    ORDERED,
    SYMBOLS,
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
    describe,
    events_used,
    references,
)
from segone.segments.rules.ibis import compile_rule, event_column
from segone.segments.rules.parser import load_catalogue, parse_rule_node, rule_from_obj
from segone.segments.rules.python import (
    _evaluate_cmp,
    _missing,
    count_events,
    evaluate,
    evaluate_cmp,
    missing,
)

__all__ = [
    "COMPARE",
    "MISSING_TEXT",
    "OPS",
    "ORDERED",
    "SYMBOLS",
    "AllOf",
    "AnyOf",
    "Catalogue",
    "Cmp",
    "Did",
    "InSegment",
    "Not",
    "Rule",
    "RuleError",
    "Segment",
    "_evaluate_cmp",
    "_missing",
    "compile_rule",
    "count_events",
    "describe",
    "evaluate",
    "evaluate_cmp",
    "event_column",
    "events_used",
    "load_catalogue",
    "missing",
    "parse_rule_node",
    "references",
    "rule_from_obj",
]

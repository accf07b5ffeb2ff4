"""Segments: a rule language over profiles and behaviour, evaluated in batch and per person."""

from segone.segments.batch import memberships, profile_attributes, summary
from segone.segments.rules import (
    Catalogue,
    RuleError,
    Segment,
    evaluate,
    load_catalogue,
    rule_from_obj,
)

__all__ = [
    "Catalogue",
    "RuleError",
    "Segment",
    "evaluate",
    "load_catalogue",
    "memberships",
    "profile_attributes",
    "rule_from_obj",
    "summary",
]

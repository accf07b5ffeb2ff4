"""Segments: a rule language over profiles and behaviour, evaluated in batch and per person."""

from pathlib import Path
from typing import Any

from segone.segments.batch import memberships, profile_attributes, summary
from segone.segments.rules import (
    Catalogue,
    RuleError,
    Segment,
    evaluate,
    load_catalogue,
    rule_from_obj,
)


def project_catalogue(project: Any, wh: Any, extra: list[Path] | None = None) -> Catalogue:
    """The built-in segments (thresholds from ``[segments]``) and the project's
    ``segments/*.yaml`` files (plus ``extra`` files), which may redefine built-in ones."""
    from segone.segments.builtin import builtin_catalogue

    folder = Path(project.root) / "segments"
    files = sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml"))
    files += [f for f in (extra or []) if f.resolve() not in {x.resolve() for x in files}]
    attrs = profile_attributes(wh)
    return load_catalogue(files, attrs, base=builtin_catalogue(attrs, project.settings.segments))


__all__ = [
    "Catalogue",
    "RuleError",
    "Segment",
    "evaluate",
    "load_catalogue",
    "memberships",
    "profile_attributes",
    "project_catalogue",
    "rule_from_obj",
    "summary",
]

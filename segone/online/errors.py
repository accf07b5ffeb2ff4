"""Errors of the online side that callers answer differently from a failure (a 404)."""

from __future__ import annotations

from segone.exceptions import SegoneError


class NotFound(SegoneError):
    """No person (or decision) is known by that identifier."""

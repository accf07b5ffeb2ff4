"""The error the decision layer raises on bad input (the API answers it with a 400)."""

from __future__ import annotations

from segone.exceptions import SegoneError


class DecisionError(SegoneError, ValueError):
    """A decision or feedback request is invalid: bad context, unknown kind, item not shown."""

"""The error the decision layer raises on bad input (the API answers it with a 400); defined
in ``segone.exceptions`` with every other error, re-exported here."""

from __future__ import annotations

from segone.exceptions import DecisionError

__all__ = ["DecisionError"]

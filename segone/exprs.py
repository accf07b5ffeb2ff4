"""Small Ibis expression helpers shared by the pipelines."""

from __future__ import annotations

import ibis
import ibis.expr.types as ir


def lit(s: str) -> ir.StringValue:
    """A string literal, typed, so that concatenation and unions compile the same everywhere."""
    return ibis.literal(s, type="string")

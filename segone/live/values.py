"""Message values read as the warehouse reads them: text, trimmed, empty as missing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from segone.identity.providers import TRIM, plain  # (TRIM: what the warehouse's TRIM removes)

__all__ = ["TRIM", "clean", "plain", "text", "traits_of"]


def text(v: Any) -> str | None:
    """A scalar as the warehouse stores it (``segone.ingest.segment`` turns numbers into text);
    objects and lists are not ids."""
    if type(v) is str:
        return v
    if v is None or isinstance(v, dict | list):
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def clean(v: Any) -> str | None:
    """``plain(text(v))``, quicker for text."""
    if type(v) is str:
        return v.strip(TRIM) or None
    return plain(text(v))


def traits_of(msg: Mapping[str, Any]) -> dict[str, Any]:
    """The message's traits: ``context.traits`` overlaid with top-level ``traits``."""
    ctx = msg.get("context")
    inner = ctx.get("traits") if isinstance(ctx, dict) else None
    top = msg.get("traits")
    if inner is None and top is None:
        return {}
    out: dict[str, Any] = dict(inner) if isinstance(inner, dict) else {}
    if isinstance(top, dict):
        out.update(top)
    return out

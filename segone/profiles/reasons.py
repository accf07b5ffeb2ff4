"""Reasons that cite products, written with the products' names (no imports: the server's
decisions use it too)."""

from __future__ import annotations

from collections.abc import Callable

#: how a recommendation's reason starts (``segone.models.nextproducts``): the owned products
#: that led to it follow, as ids separated by ", "
BECAUSE = "because you bought "


def named_reason(reason: str, label: Callable[[str], str]) -> str:
    """``reason`` with each product a ``because you bought P1, P2`` reason cites called
    ``label(id)`` (its name where the catalogue has one); other reasons unchanged."""
    if not reason.startswith(BECAUSE):
        return reason
    return BECAUSE + ", ".join(label(i) for i in reason[len(BECAUSE) :].split(", "))

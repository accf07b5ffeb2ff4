"""Errors of the online side that callers answer differently from a failure (a 404).

``NotFound`` is the online engine's old name for :class:`segone.exceptions.NotFoundError`: one
idea, one class."""

from __future__ import annotations

from segone.exceptions import NotFoundError

NotFound = NotFoundError

__all__ = ["NotFound"]

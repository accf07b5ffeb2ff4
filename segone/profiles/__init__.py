"""The single customer view: one profile per person, built from the raw tables as of any date.

The features are ``segone.profiles.view``; the build that joins scores and stages to them is
``segone.pipeline.build``. ``build``, ``BuildResult`` and ``profiles_expr`` are still importable
from here for older code (a lazy shim: profiles sit below the pipeline).
"""

from typing import Any

_MOVED = {"BuildResult", "build", "profiles_expr"}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        from segone.pipeline import build as moved

        return getattr(moved, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["BuildResult", "build", "profiles_expr"]

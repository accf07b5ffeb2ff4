"""segone: segment-of-one marketing — one profile, segment, forecast and decision per person.

The public names below are imported on first use, not with the package: ``import segone`` (and
so every ``segone`` command, ``--help`` included) must not pay for Ibis, pandas or scikit-learn
before it needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from segone.config import Settings
    from segone.exceptions import SegoneError
    from segone.ingest import LoadResult, ingest_file
    from segone.notebook import NotebookProject, open
    from segone.project import Project
    from segone.store import DuckDBWarehouse, Warehouse

__version__ = "0.1.0"

_LAZY = {
    "DuckDBWarehouse": "segone.store",
    "LoadResult": "segone.ingest",
    "NotebookProject": "segone.notebook",
    "Project": "segone.project",
    "SegoneError": "segone.exceptions",
    "Settings": "segone.config",
    "Warehouse": "segone.store",
    "ingest_file": "segone.ingest",
    "open": "segone.notebook",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "DuckDBWarehouse",
    "LoadResult",
    "NotebookProject",
    "Project",
    "SegoneError",
    "Settings",
    "Warehouse",
    "__version__",
    "ingest_file",
    "open",
]

"""segone: segment-of-one marketing — one profile, segment, forecast and decision per person."""

from segone.config import Settings
from segone.exceptions import SegoneError
from segone.ingest import LoadResult, ingest_file
from segone.project import Project
from segone.store import DuckDBWarehouse, Warehouse

__version__ = "0.1.0"

__all__ = [
    "DuckDBWarehouse",
    "LoadResult",
    "Project",
    "SegoneError",
    "Settings",
    "Warehouse",
    "__version__",
    "ingest_file",
]

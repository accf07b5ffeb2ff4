"""A generated store ingested into a DuckDB warehouse, as the benchmarks use it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from segone.config import IngestSettings
from segone.datasets import SAMPLE_FILES
from segone.datasets.sample import SampleConfig
from segone.ingest import ingest_file
from segone.store.base import Warehouse

#: The last instant of the generated period: the as-of time of the benchmarks' builds.
SAMPLE_END = (
    datetime.fromisoformat(SampleConfig().end).replace(tzinfo=UTC)
    + timedelta(days=1)
    - timedelta(microseconds=1)
)


def ingest_sample(wh: Warehouse, sample_dir: Path) -> None:
    """Ingest every file of a generated store (``generate_sample(sample_dir, ...)``)."""
    mapping = {"customers_loyalty": {"source_id": "card_number", "loyalty_id": "card_number"}}
    for kind, name in SAMPLE_FILES:
        ingest_file(wh, kind, sample_dir / "data" / name, settings=IngestSettings(mapping=mapping))

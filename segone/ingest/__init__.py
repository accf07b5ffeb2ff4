"""Ingestion: files and Segment messages into the canonical raw tables; bad rows to quarantine."""

from segone.ingest.kinds import KINDS, KindSpec
from segone.ingest.loader import LoadResult, ingest_file

__all__ = ["KINDS", "KindSpec", "LoadResult", "ingest_file"]

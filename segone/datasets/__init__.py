"""Data sets: a generated multichannel store with ground truth, and real public data (CDNOW)."""

from segone.datasets.cdnow import load_cdnow, write_cdnow_orders
from segone.datasets.sample import SAMPLE_FILES, generate_sample

__all__ = ["SAMPLE_FILES", "generate_sample", "load_cdnow", "write_cdnow_orders"]

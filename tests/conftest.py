from __future__ import annotations

import json
from pathlib import Path

import pytest

from segone.datasets import generate_sample
from segone.store.duckdb import DuckDBWarehouse


@pytest.fixture
def wh():
    w = DuckDBWarehouse(":memory:")
    w.ensure_tables()
    yield w
    w.close()


@pytest.fixture(scope="session")
def small_sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A generated store of 1,500 people, shared by the tests that only read it."""
    out = tmp_path_factory.mktemp("sample")
    counts = generate_sample(out, customers=1500, seed=11)
    return out, counts


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(path: Path, rows: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path

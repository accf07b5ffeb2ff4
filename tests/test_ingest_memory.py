"""The load's own memory cap: set while a file loads, restored after, named when it is wrong."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from segone.config import IngestSettings
from segone.exceptions import ConfigError
from segone.ingest import ingest_file
from segone.store.duckdb import DuckDBWarehouse


def _limit(wh: DuckDBWarehouse) -> str:
    return str(wh.backend.con.execute("SELECT current_setting('memory_limit')").fetchone()[0])


def _customers(tmp_path: Path) -> Path:
    f = tmp_path / "customers.csv"
    f.write_text("customer_id,email\nc1,a@example.com\nc2,b@example.com\n")
    return f


def test_the_load_runs_under_its_own_cap_and_gives_the_warehouse_its_cap_back(
    tmp_path: Path,
) -> None:
    with DuckDBWarehouse(tmp_path / "w.duckdb", memory_limit="3GB") as wh:
        before = _limit(wh)
        seen: list[str] = []
        r = ingest_file(
            wh,
            "customers",
            _customers(tmp_path),
            settings=IngestSettings(memory_limit="700MB"),
            progress=lambda *_: seen.append(_limit(wh)),
        )
        assert r.loaded == 2
        assert seen and all(s.startswith(("667", "700", "0.6")) for s in seen), seen
        assert _limit(wh) == before


def test_a_cap_that_is_not_a_size_is_a_settings_error_and_changes_nothing(tmp_path: Path) -> None:
    with DuckDBWarehouse(tmp_path / "w.duckdb", memory_limit="3GB") as wh:
        before = _limit(wh)
        with pytest.raises(ConfigError, match=r"ingest\.memory_limit 'lots'"):
            ingest_file(
                wh, "customers", _customers(tmp_path), settings=IngestSettings(memory_limit="lots")
            )
        assert _limit(wh) == before
        assert wh.count("customers") == 0


def test_each_chunk_is_in_the_engine_before_the_next_is_read() -> None:
    # nothing of the file accumulates in Python: a chunk is staged as soon as it is read, and a
    # slice is handed on when it is full
    import pyarrow as pa

    from segone.ingest.loader import STAGE, _staged_slices
    from segone.ingest.readers import Chunk, Reject

    with DuckDBWarehouse() as wh:
        in_engine: list[int] = []

        def chunks() -> Iterator[Chunk]:
            for i in range(5):
                if i:
                    in_engine.append(wh.count(STAGE))
                lines = pa.array(range(i * 3, i * 3 + 3), pa.int64())
                yield Chunk(pa.table({"a": ["x"] * 3, "_line": lines}), [Reject(i, "p", "r", "{}")])

        rejects: list[Reject] = []
        slices = [wh.count(STAGE) for _ in _staged_slices(wh, chunks(), 6, rejects)]
        assert in_engine == [3, 6, 3, 6]
        assert slices == [6, 6, 3]
        assert [r.line for r in rejects] == [0, 1, 2, 3, 4]

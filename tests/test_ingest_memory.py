"""The load's own memory cap: set while a file loads, restored after, named when it is wrong."""

from __future__ import annotations

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

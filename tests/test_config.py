"""Settings: defaults, the TOML file, environment overrides and clear errors."""

from __future__ import annotations

import pytest

from segone.config import Settings
from segone.exceptions import ConfigError, ProjectError
from segone.project import Project


def test_defaults_and_env_override(tmp_path, monkeypatch):
    Project.init(tmp_path)
    s = Settings.load(tmp_path)
    assert s.ingest.timezone == "UTC" and s.warehouse.threads == 2
    monkeypatch.setenv("SEGONE_INGEST_TIMEZONE", "Europe/Paris")
    monkeypatch.setenv("SEGONE_WAREHOUSE_THREADS", "1")
    s = Settings.load(tmp_path)
    assert s.ingest.timezone == "Europe/Paris" and s.warehouse.threads == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[warehouse\n", "segone.toml"),
        ("[nonsense]\nx=1\n", "unknown section"),
        ("[ingest]\nchunk_rowz = 5\n", "unknown setting"),
        ("[ingest]\nchunk_rows = 0\n", "must be positive"),
        ("[ingest]\nchunk_rows = 'many'\n", "invalid literal"),
        ("[ingest.mapping]\norders = 'x'\n", "canonical column"),
        ("[server]\nwriter = 'fork'\n", 'server.writer must be "process" or "thread"'),
        ("[server]\nearliest_timestamp = 'last year'\n", "earliest_timestamp must be an ISO"),
        ("[server]\ntimestamp_future_days = -1\n", "timestamp_future_days must be >= 0"),
    ],
)
def test_bad_settings_are_clear_errors(tmp_path, text, message):
    (tmp_path / "segone.toml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        Settings.load(tmp_path)


def test_missing_project(tmp_path):
    with pytest.raises(ProjectError, match="segone init"):
        Settings.load(tmp_path / "nope")

"""Settings: defaults, the TOML file, environment and flag overrides, origins and clear errors."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from segone.config import DEFAULT_TOML, Settings, parse_flags
from segone.config.model import SECTIONS, Layers, markdown_table
from segone.exceptions import ConfigError, ProjectError
from segone.project import Project

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_defaults_and_env_override(tmp_path, monkeypatch):
    Project.init(tmp_path)
    s = Settings.load(tmp_path)
    assert s.ingest.timezone == "UTC" and s.warehouse.threads == 2
    monkeypatch.setenv("SEGONE_INGEST_TIMEZONE", "Europe/Paris")
    monkeypatch.setenv("SEGONE_WAREHOUSE_THREADS", "1")
    s = Settings.load(tmp_path)
    assert s.ingest.timezone == "Europe/Paris" and s.warehouse.threads == 1


def test_precedence_flag_over_env_over_legacy_env_over_file(tmp_path):
    (tmp_path / "segone.toml").write_text(
        '[server]\nport = 7000\nonline_url = "sqlite:///a.db"\nchannels = ["email"]\n'
        "[lifecycle]\nnew_days = 10\n"
    )
    env = {
        "SEGONE_ONLINE_URL": "sqlite:///legacy.db",
        "SEGONE_SERVER__ONLINE_URL": "sqlite:///nested.db",
        "SEGONE_SERVER__PORT": "7100",
        "SEGONE_SERVER__CHANNELS": "sms, push",
        "SEGONE_WRITE_KEYS": "wk_one,wk_two",
        "SEGONE_PROJECT": "/elsewhere",  # the CLI's own variable, not a setting
    }
    flags = parse_flags(["server.port=7200"])
    s = Settings.load(tmp_path, flags=flags, environ=env)
    assert s.server.port == 7200  # flag > env > file
    assert s.server.online_url == "sqlite:///nested.db"  # SEGONE_SERVER__X > SEGONE_X
    assert s.server.channels == ("sms", "push")  # comma separated lists
    assert s.server.write_keys == ("wk_one", "wk_two")
    assert s.lifecycle.new_days == 10.0 and isinstance(s.lifecycle.new_days, float)
    layers = Layers({"server": {"port": 7000}}, "segone.toml", flags, env)
    assert layers.origin("server", "port") == ("flag", "--set server.port")
    assert layers.origin("server", "online_url") == ("env", "SEGONE_SERVER__ONLINE_URL")
    assert layers.origin("server", "write_keys") == ("env", "SEGONE_WRITE_KEYS")
    assert layers.origin("server", "host") == ("default", "")


def test_every_existing_toml_still_loads(tmp_path):
    (tmp_path / "segone.toml").write_text(DEFAULT_TOML)
    s = Settings.load(tmp_path, environ={})
    d = Settings(root=tmp_path)
    for name in ("warehouse", "ingest", "identity", "lifecycle", "segments", "models", "server"):
        assert getattr(s, name) == getattr(d, name), name
    # the TOML types the old reader converted: numbers for text, ints for floats
    (tmp_path / "segone.toml").write_text(
        "[project]\nname = 'shop'\n[identity]\ndefault_country_code = 44\nblocked = ['n/a']\n"
        "[lifecycle]\nchurn_factor = 4\n[models]\nhorizon_days = 30\n"
    )
    s = Settings.load(tmp_path, environ={})
    assert s.identity.default_country_code == "44" and s.identity.extra_blocked == ("n/a",)
    assert s.lifecycle.churn_factor == 4.0 and s.models.horizon_days == 30


def test_model_defaults_are_the_dataclass_defaults(tmp_path):
    """The subsystems' frozen dataclasses and the model agree on every default."""
    m = SECTIONS
    d = Settings(root=tmp_path)
    for section in ("warehouse", "lifecycle", "segments", "models", "server"):
        fields = {f.name for f in dataclasses.fields(getattr(d, section))}
        assert fields == set(m[section].model_fields), section
        for key in fields:
            want = getattr(getattr(d, section), key)
            assert m[section].model_fields[key].get_default(call_default_factory=True) == want


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[warehouse\n", "segone.toml"),
        ("[nonsense]\nx=1\n", "unknown section"),
        ("[ingest]\nchunk_rowz = 5\n", r"unknown setting ingest.chunk_rowz; did you mean"),
        ("[ingest]\nchunk_rows = 0\n", r"segone.toml: ingest.chunk_rows: Input should be greater"),
        ("[ingest]\nchunk_rows = 'many'\n", r"ingest.chunk_rows: Input should be a valid integer"),
        ("[ingest.mapping]\norders = 'x'\n", r"ingest.mapping.orders: Input should be a valid"),
        ("[server]\nwriter = 'fork'\n", r"server.writer: Input should be 'process' or 'thread'"),
        ("[server]\nearliest_timestamp = 'last year'\n", "earliest_timestamp: must be an ISO"),
        ("[server]\ntimestamp_future_days = -1\n", "timestamp_future_days: Input should be"),
        ("[server]\ncors_origins = ['shop.example.com']\n", "is not an origin"),
        ("[server]\nwebhook_url = 'http://x'\n", "no webhook_secret"),
        ("[models]\nchurn = 0.5\n", "models.churn: takes true or false"),
        ("[models]\ntransaction_model = 'bgnbd'\n", "'pareto_nbd' or 'bg_nbd'"),
        ("server = 3\n", "server must be a table"),
    ],
)
def test_bad_settings_are_clear_errors(tmp_path, text, message):
    (tmp_path / "segone.toml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        Settings.load(tmp_path, environ={})


def test_bad_environment_value_names_the_variable(tmp_path):
    (tmp_path / "segone.toml").write_text("")
    with pytest.raises(ConfigError, match=r"^environment SEGONE_SERVER__PORT: server.port:"):
        Settings.load(tmp_path, environ={"SEGONE_SERVER__PORT": "eighty"})
    with pytest.raises(
        ConfigError,
        match=r"environment SEGONE_SERVER__PROT: unknown setting "
        r"server.prot; did you mean server.port",
    ):
        Settings.load(tmp_path, environ={"SEGONE_SERVER__PROT": "80"})
    with pytest.raises(ConfigError, match=r"^--set server.port: server.port:"):
        Settings.load(tmp_path, flags=parse_flags(["server.port=-4"]), environ={})
    with pytest.raises(ConfigError, match=r"^environment SEGONE_MODELS: .*JSON object"):
        Settings.load(tmp_path, environ={"SEGONE_MODELS": "foo"})
    with pytest.raises(ConfigError, match=r"section\.key=value"):
        parse_flags(["port=80"])
    # a secret's value is never echoed in an error
    with pytest.raises(ConfigError) as exc:
        Settings.load(
            tmp_path,
            environ={"SEGONE_ADMIN_TOKENS": "tok-secret-1,,"}
            | {"SEGONE_SERVER__ADMIN_TOKENS": '["tok-secret-1", " "]'},
        )
    assert "tok-secret-1" not in str(exc.value)


def test_missing_project(tmp_path):
    with pytest.raises(ProjectError, match="segone init"):
        Settings.load(tmp_path / "nope")


def test_docs_table_is_the_model():
    text = (DOCS / "configuration.md").read_text()
    assert markdown_table() in text, "regenerate the table: python -m segone.config"
    for key in re.findall(r"^#?\s*([a-z_]+) = ", DEFAULT_TOML, flags=re.M):
        if key not in ("order_id", "ts"):
            assert any(key in cls.model_fields for cls in SECTIONS.values()), key

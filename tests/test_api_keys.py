"""``segone keys`` and the key file: secrets shown once and stored hashed, scopes and origins
checked, rotation with a grace period, revocation, and the ring a server reads them through."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from segone.api.app import cookie_anonymous_id
from segone.api.keys import KeyFile, KeyRing, digest
from segone.cli import app
from segone.config import Settings
from segone.exceptions import ConfigError
from segone.project import Project


def _keys(project: Path, *args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(app, ["keys", *args, "-p", str(project)])
    return r.exit_code, r.stdout, r.stderr


def test_keys_cli_create_list_rotate_revoke(tmp_path: Path) -> None:
    Project.init(tmp_path)
    code, out, err = _keys(
        tmp_path,
        "create",
        "--kind",
        "write",
        "--origin",
        "https://shop.example.com/",
        "--name",
        "shop",
        "--json",
    )
    assert code == 0, err
    made = json.loads(out)
    secret = made["secret"]
    assert secret.startswith(f"wk_{made['id']}_") and len(secret) > 40
    assert made["scopes"] == ["ingest"] and made["origins"] == ["https://shop.example.com"]
    stored = (tmp_path / "keys.json").read_text()
    assert secret not in stored and digest(secret) in stored
    assert os.stat(tmp_path / "keys.json").st_mode & 0o777 == 0o600

    code, out, _ = _keys(tmp_path, "create", "--kind", "admin", "--scope", "read")
    assert code == 0 and "secret:" in out and "scopes: read" in out

    code, out, _ = _keys(tmp_path, "list", "--json")
    listed = json.loads(out)
    assert [k["kind"] for k in listed] == ["write", "admin"]
    assert all("hash" not in k and "secret" not in k for k in listed)

    code, out, _ = _keys(tmp_path, "rotate", made["id"], "--json")
    rotated = json.loads(out)
    assert code == 0 and rotated["id"] != made["id"] and rotated["secret"] != secret
    assert rotated["origins"] == made["origins"]
    code, out, _ = _keys(tmp_path, "list")
    assert "revoked" in out and "active" in out

    code, out, _ = _keys(tmp_path, "revoke", rotated["id"], "--json")
    assert code == 0 and json.loads(out)["active"] is False

    for bad in (
        ["create", "--kind", "root"],
        ["create", "--scope", "everything"],
        ["create", "--origin", "shop.example.com"],
        ["create", "--origin", "https://shop.example.com/cart"],
        ["create", "--rate", "0"],
        ["revoke", "nope"],
    ):
        code, _, err = _keys(tmp_path, *bad)
        assert code == 2 and err.startswith("error:"), (bad, err)


def test_the_ring_follows_the_file_and_expires_grace_periods(tmp_path: Path) -> None:
    settings = Settings.from_dict(tmp_path, {"server": {"write_keys": ["wk_plain"]}})
    keys = KeyFile(tmp_path / "keys.json")
    ring = KeyRing.from_settings(settings.server, tmp_path)
    plain = ring.lookup("wk_plain")
    assert plain is not None and plain.scopes == {"ingest"} and plain.source == "settings"
    record, secret = keys.create("decide", origins=["https://a.example"])
    ring.reload(force=True)
    key = ring.lookup(secret)
    assert key is not None and key.id == record.id and key.scopes == {"decide"}
    assert ring.origins() == {"https://a.example"}
    assert ring.lookup(secret + "x") is None and ring.lookup("") is None

    now = datetime.now(UTC)
    _, new = keys.rotate(record.id, grace=timedelta(seconds=1), now=now)
    ring.reload(force=True)
    assert ring.lookup(secret) is not None and ring.lookup(new) is not None
    later = now + timedelta(seconds=2)
    assert not keys.records()[0].active(later)
    keys.revoke(keys.records()[1].id)
    ring.reload(force=True)
    assert ring.lookup(new) is None


def test_a_broken_key_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "keys.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not a segone key file"):
        KeyFile(tmp_path / "keys.json").records()
    (tmp_path / "keys.json").write_text('{"version": 99, "keys": []}')
    with pytest.raises(ConfigError, match="version"):
        KeyFile(tmp_path / "keys.json").records()


def test_cors_settings_from_the_file_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = Settings.from_dict(tmp_path, {"server": {"cors_origins": ["https://a.example/"]}})
    assert s.server.cors_origins == ("https://a.example",)
    monkeypatch.setenv("SEGONE_CORS_ORIGINS", "https://b.example, http://localhost:3000")
    s = Settings.from_dict(tmp_path, {})
    assert s.server.cors_origins == ("https://b.example", "http://localhost:3000")
    monkeypatch.setenv("SEGONE_CORS_ORIGINS", "b.example")
    with pytest.raises(ConfigError, match="not an origin"):
        Settings.from_dict(tmp_path, {})
    monkeypatch.delenv("SEGONE_CORS_ORIGINS")
    with pytest.raises(ConfigError, match="true or false"):
        Settings.from_dict(tmp_path, {"server": {"tracing": "yes"}})
    with pytest.raises(ConfigError, match="rate_limit_per_second: Input should be greater"):
        Settings.from_dict(tmp_path, {"server": {"rate_limit_per_second": -1}})


@pytest.mark.parametrize(
    ("cookie", "expected"),
    [
        (None, None),
        ("", None),
        ("ajs_anonymous_id=%22abc-123%22", "abc-123"),
        ('a=1; ajs_anonymous_id="abc-123"; b=2', "abc-123"),
        ("ajs_anonymous_id=plain", "plain"),
        ("ajs_anonymous_id=%22%22", None),
        ("ajs_anonymous_id=%22broken", None),
        ("other_ajs_anonymous_id=x", None),
    ],
)
def test_the_anonymous_id_cookie(cookie: str | None, expected: str | None) -> None:
    assert cookie_anonymous_id(cookie) == expected

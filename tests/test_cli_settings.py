"""Settings and projects on the command line: ``segone --set``, ``segone config show``, and the
one project opener every command group uses (a clear error where there is no project)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from segone.cli import SUBAPPS, app

runner = CliRunner()


def run(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, list(args), catch_exceptions=False, env=env)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cfg") / "p"
    assert run("init", str(root)).exit_code == 0
    return root


def test_config_show_names_every_source_and_masks_secrets(project: Path) -> None:
    r = run(
        "--set",
        "server.port=9100",
        "config",
        "show",
        "--json",
        "-p",
        str(project),
        env={
            "SEGONE_SERVER__HOST": "0.0.0.0",
            "SEGONE_ADMIN_TOKENS": "adm-very-secret-token",
            "SEGONE_SERVER__WEBHOOK_SECRET": "whsec_c2VjcmV0c2VjcmV0",
        },
    )
    assert r.exit_code == 0, r.output
    rows = {x["key"]: x for x in json.loads(r.stdout)}
    assert rows["server.port"] == {
        "key": "server.port",
        "value": 9100,
        "source": "flag",
        "where": "--set server.port",
    }
    assert rows["server.host"]["value"] == "0.0.0.0"
    assert rows["server.host"]["where"] == "SEGONE_SERVER__HOST"
    assert rows["warehouse.threads"]["source"] == "file"
    assert rows["identity.max_iterations"]["source"] == "default"
    assert rows["server.admin_tokens"]["where"] == "SEGONE_ADMIN_TOKENS"
    assert "very-secret" not in r.stdout and "c2VjcmV0" not in r.stdout  # token, webhook secret
    assert rows["server.webhook_secret"]["value"] == "****"
    # the text table too
    r = run("config", "show", "-p", str(project), env={"SEGONE_ADMIN_TOKENS": "adm-secret-2"})
    assert r.exit_code == 0 and "server.port" in r.stdout and "secret-2" not in r.stdout


def test_a_bad_flag_or_variable_is_an_error_naming_it(project: Path) -> None:
    r = run("--set", "server.port=eighty", "status", "-p", str(project))
    assert r.exit_code == 2
    assert "--set server.port: server.port: Input should be a valid integer" in r.output
    r = run("--set", "port=1", "status", "-p", str(project))
    assert r.exit_code == 2 and "section.key=value" in r.output
    r = run("status", "-p", str(project), env={"SEGONE_MODELS__HORIZN_DAYS": "30"})
    assert r.exit_code == 2
    assert "SEGONE_MODELS__HORIZN_DAYS: unknown setting models.horizn_days" in r.output
    assert "did you mean models.horizon_days" in r.output


def test_the_flag_reaches_the_command(project: Path) -> None:
    """``--set`` changes what the command does, not only what ``config show`` prints: a key
    file named by the flag is the one ``segone keys`` writes."""
    r = run("--set", "server.keys_file=other-keys.json", "keys", "create", "-p", str(project))
    assert r.exit_code == 0, r.output
    assert (project / "other-keys.json").exists() and not (project / "keys.json").exists()
    # and a second command line in the same process does not inherit it
    r = run("keys", "list", "--json", "-p", str(project))
    assert r.exit_code == 0 and json.loads(r.stdout) == []


@pytest.mark.parametrize(
    "args",
    [
        ["status"],
        ["config", "show"],
        ["keys", "list"],
        ["users", "list"],
        ["campaign", "list"],
        ["segments", "list"],
        ["profile", "email:a@b.c"],
        ["dead-letters"],
    ],
)
def test_every_group_opens_projects_the_same_way(tmp_path: Path, args: list[str]) -> None:
    r = run(*args, "-p", str(tmp_path / "nowhere"))
    assert r.exit_code == 2, r.output
    assert f"no segone project at {tmp_path / 'nowhere'}" in r.output
    assert "segone init" in r.output and "Traceback" not in r.output


def test_the_groups_in_the_list_are_covered() -> None:
    names = {name for _, _, name in SUBAPPS}
    assert {"config", "keys", "users", "campaign"} <= names

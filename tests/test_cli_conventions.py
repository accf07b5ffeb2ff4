"""The habits of the command line: --version, -h, --json, exit codes, NO_COLOR, verbatim help,
a fast start, build progress, and rule values checked with "did you mean"."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import segone
from segone.cli import app
from tests.cli_project import make_project

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("ibis", "pandas", "sklearn", "scipy", "duckdb", "numpy", "pyarrow", "rich")


def run(*args: str, code: int = 0):
    r = runner.invoke(app, list(args), catch_exceptions=False)
    assert r.exit_code == code, r.output
    return r


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def proj(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project(tmp_path_factory.mktemp("cli"))


# -- start-up ------------------------------------------------------------------------------------


def test_the_cli_and_its_help_import_nothing_heavy():
    # what makes `segone --help` start in well under 300 ms (bench/cli_bench.py times it):
    # neither the CLI, its help, nor the version import the library's engines
    code = (
        "import sys\n"
        "from segone.cli import main\n"
        "for args in (['--help'], ['--version'], ['segments', '-h'], ['build', '-h']):\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit:\n"
        "        pass\n"
        f"print('HEAVY', sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = _python(code)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout
    assert "segone " + segone.__version__ in out.stdout


def test_importing_segone_and_its_settings_and_errors_is_cheap():
    out = _python(
        "import sys, segone, segone.config, segone.exceptions\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


# -- conventions ---------------------------------------------------------------------------------


def test_version_and_short_help_everywhere():
    assert run("--version").stdout.strip() == f"segone {segone.__version__}"
    assert run("-V").stdout.strip() == f"segone {segone.__version__}"
    for args in (["-h"], ["ingest", "-h"], ["segments", "-h"], ["segments", "show", "-h"]):
        r = run(*args)
        assert "Usage:" in r.stdout and "-h, --help" in r.stdout


def test_help_text_is_printed_verbatim():
    # Rich markup used to eat "[server]" out of help text
    r = run("dead-letters", "--help")
    assert "[server] webhook_max_attempts" in r.stdout
    r = run("serve", "--help")
    assert "([server] host)" in r.stdout


def test_exit_codes(tmp_path, proj):
    assert run("status", "-p", str(tmp_path / "none"), code=2).stdout == ""
    run("status", "--no-such-option", code=2)
    run("segments", "show", "nobody", "-p", str(proj), code=2)
    empty = tmp_path / "empty.csv"
    empty.write_text("order_id,customer_id,ts,amount\n", encoding="utf-8")
    run("ingest", "orders", str(empty), "-p", str(proj), code=1)  # loaded nothing


def test_no_color_is_honoured(tmp_path):
    args = "from segone.cli import main; main(['status', '-p', '/no/such/project'])"
    coloured = _python(args, FORCE_COLOR="1")
    plain = _python(args, FORCE_COLOR="1", NO_COLOR="1")
    colour = re.compile(r"\x1b\[[0-9;]*(3[0-7]|9[0-7]|38;)[0-9;]*m")
    assert colour.search(coloured.stderr) and coloured.returncode == 2
    assert not colour.search(plain.stderr) and "error:" in plain.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["status"],
        ["models"],
        ["models", "--all"],
        ["profile", "person3@example.com"],
        ["quarantine"],
        ["loads"],
        ["segments", "list"],
        ["segments", "show", "vip"],
        ["segments", "transitions"],
    ],
)
def test_json_output_is_json_and_nothing_else(proj, args):
    r = run(*args, "-p", str(proj), "--json")
    data = json.loads(r.stdout)  # the whole of stdout is one JSON document
    assert data is not None


def test_json_payloads(proj):
    status = json.loads(run("status", "-p", str(proj), "--json").stdout)
    assert status["tables"]["orders"] in (200, 201) and status["tables"]["customers"] == 80
    (person,) = json.loads(run("profile", "person3@example.com", "-p", str(proj), "--json").stdout)
    assert person["profile"]["orders"] == 4 and person["profile"]["crm_stage"] == "lead"
    assert {i["id_type"] for i in person["identifiers"]} >= {"email", "source_id"}
    vip = json.loads(run("segments", "show", "vip", "-p", str(proj), "--json").stdout)
    assert vip["name"] == "vip" and vip["members"] == len(vip["sample"]) == 4
    sizes = json.loads(run("segments", "list", "-p", str(proj), "--json").stdout)
    assert {k: sizes[0][k] for k in ("segment", "members")} == {"segment": "vip", "members": 4}
    loads = json.loads(run("loads", "-p", str(proj), "--json").stdout)
    files = {Path(x["path"]).name: x for x in loads}
    assert files["crm.csv"]["kind"] == "customers" and files["crm.csv"]["rows_loaded"] == 80


def test_ingest_and_build_json(tmp_path, proj):
    f = tmp_path / "more.csv"
    f.write_text("order_id,customer_id,ts,amount\nx1,c1,2024-06-01,5\nx2,c1,someday,5\n")
    r = run("ingest", "orders", str(f), "-p", str(proj), "--json")
    (res,) = json.loads(r.stdout)
    assert res["loaded"] == 1 and res["rejected"] == 1 and res["loaded_nothing"] is False
    assert res["problems"] == {"invalid_timestamp(ts)": 1}
    r = run("build", "-p", str(proj), "--as-of", "2024-12-31", "--json")
    out = json.loads(r.stdout)
    assert out["profiles"] == 80 and out["as_of"].startswith("2024-12-31T23:59:59")
    assert out["identity"]["customers"] == 80 and out["published"] is None
    assert run("quarantine", "-p", str(proj), "--json").stdout.count("invalid_timestamp") == 1


# -- build progress ------------------------------------------------------------------------------


def test_build_reports_its_stages_and_remembers_their_times(proj):
    r = runner.invoke(app, ["build", "-p", str(proj), "--as-of", "2024-12-31"])
    assert r.exit_code == 0, r.output
    assert "done identities" in r.stderr
    assert re.search(r"done identities +[0-9.]+s  80 customers from 28\d records", r.stderr)
    assert "done profiles" in r.stderr and "80 profiles" in r.stderr
    times = json.loads((proj / ".segone" / "build-times.json").read_text())
    assert {"identities", "profiles", "churn", "tastes"} <= set(times["stages"])
    assert "as of 2024-12-31" in r.stdout  # the summary stays on stdout


def test_the_eta_comes_from_the_previous_build(tmp_path):
    from segone.cli.progress import BuildDisplay

    (tmp_path / ".segone").mkdir()
    (tmp_path / ".segone" / "build-times.json").write_text(
        json.dumps({"seconds": 600, "stages": {"identities": 300, "profiles": 300}})
    )
    assert BuildDisplay(tmp_path).eta() in ("about 10:00 left", "about 9:59 left")
    assert BuildDisplay(tmp_path / "elsewhere").eta() == ""  # never built: no guess


# -- rule values ---------------------------------------------------------------------------------


def test_a_typo_in_a_closed_vocabulary_is_an_error_with_a_suggestion(tmp_path, proj):
    f = tmp_path / "typo.yaml"
    f.write_text("- name: act\n  rule:\n    lifecycle_stage: activ\n", encoding="utf-8")
    r = runner.invoke(app, ["segments", "preview", str(f), "-p", str(proj)])
    assert r.exit_code == 2
    assert "did you mean 'active'" in r.stderr and "typo.yaml:3" in r.stderr


def test_a_value_close_to_one_in_the_data_is_an_error(tmp_path, proj):
    f = tmp_path / "crm.yaml"
    f.write_text("- name: leads\n  rule:\n    crm_stage: {in: [Lead]}\n", encoding="utf-8")
    r = runner.invoke(app, ["segments", "preview", str(f), "-p", str(proj)])
    assert r.exit_code == 2 and "did you mean 'lead'" in r.stderr and "in the data" in r.stderr
    # a value simply not there yet (nothing close) is a valid rule
    f.write_text("- name: partners\n  rule:\n    crm_stage: partner\n", encoding="utf-8")
    r = run("segments", "preview", str(f), "-p", str(proj), "--json")
    assert json.loads(r.stdout) == [
        {"segment": "partners", "members": 0, "share": 0.0, "description": ""}
    ]


# -- the library functions behind the commands ---------------------------------------------------


def test_the_queries_behind_the_commands(proj):
    from segone.exceptions import NotFoundError
    from segone.models.registry import fitted_models
    from segone.project import Project
    from segone.segments import project_catalogue
    from segone.segments.queries import (
        last_as_of,
        segment_detail,
        segment_members,
        segment_sizes,
    )
    from segone.segments.vocabulary import data_vocabulary
    from segone.status import quarantine_rows

    p = Project.open(proj)
    with p.warehouse(read_only=True) as wh:
        cat = project_catalogue(p, wh)
        assert f"{last_as_of(wh):%Y-%m-%d}" == "2024-12-31"
        sizes = segment_sizes(wh, cat).set_index("segment")
        d = segment_detail(wh, cat, "vip", limit=2)
        assert d.members == sizes.loc["vip", "members"] == 4 and len(d.sample) == 2
        assert d.rule == "revenue_percentile >= 0.95"
        members = wh.execute(segment_members(wh, cat, "vip"))
        assert sorted(members.customer_id)[:2] == d.sample
        assert (members.revenue_percentile >= 0.95).all()
        with pytest.raises(NotFoundError, match="did you mean 'vip'"):
            segment_detail(wh, cat, "VIP")
        fits = fitted_models(wh, history=True)
        assert all(f["rows"] > 0 and isinstance(f["params"], dict) for f in fits)
        rows = quarantine_rows(wh)  # empty, or the row test_ingest_and_build_json rejected
        assert all(r["problems"] == "invalid_timestamp(ts)" for r in rows)
        assert all("cannot read 'someday'" in r["reason"] for r in rows)
        vocab = data_vocabulary(wh)
        assert vocab["crm_stage"] == {"lead", "customer", "opportunity"}
        assert vocab["lifecycle_stage"] <= {"new", "active", "at_risk", "churned", "reactivated"}


def test_vocabulary_checks_directly():
    from segone.exceptions import RuleError
    from segone.segments.rules import AllOf, Cmp, Did, Not
    from segone.segments.vocabulary import check_rule, closest

    assert closest("activ", ["active", "new"]) == "active"
    assert closest("LEAD ", ["lead"]) == "lead"
    assert closest("zzz", ["lead"]) is None
    rule = AllOf((Cmp("orders", "gte", 2), Not(Cmp("channels", "contains", "emial"))))
    with pytest.raises(RuleError, match="did you mean 'email'"):
        check_rule(rule, "here", strict=True)
    vocab = {"event": {"Pricing", "Signup"}}
    with pytest.raises(RuleError, match="did you mean 'Pricing'"):
        check_rule(Did("pricing"), "f.yaml:3", vocab, strict=False)
    check_rule(Did("Checkout"), "f.yaml:3", vocab, strict=False)  # new, not a typo

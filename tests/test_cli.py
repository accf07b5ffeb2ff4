"""The command line, as a user meets it: real files, a real warehouse, clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from segone.cli import app
from tests.conftest import write

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_init_ingest_status_quarantine(tmp_path):
    proj = tmp_path / "p"
    assert run("init", str(proj)).exit_code == 0
    assert (proj / "segone.toml").exists() and (proj / "warehouse.duckdb").exists()
    assert run("init", str(proj)).exit_code == 2  # already a project
    f = write(tmp_path / "shop.csv", "Ref,Buyer,When,Total\nZ1,k9,2024-03-01,10\nZ2,k9,someday,5\n")
    r = run(
        "ingest",
        "orders",
        str(f),
        "-p",
        str(proj),
        "--map",
        "order_id=Ref",
        "--map",
        "customer_id=Buyer",
        "--map",
        "ts=When",
    )
    assert r.exit_code == 0, r.output
    assert "loaded 1 orders" in r.output and "rejected 1" in r.output
    assert "invalid_timestamp(ts)" in r.output
    r = run("status", "-p", str(proj))
    assert r.exit_code == 0 and "orders" in r.output and "invalid_timestamp(ts)" in r.output
    r = run("quarantine", "-p", str(proj))
    assert "invalid_timestamp(ts)" in r.output and "someday" not in r.output  # no values by default
    r = run("quarantine", "-p", str(proj), "--values")
    assert "cannot read 'someday'" in r.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ingest", "bogus", "x.csv"], "unknown kind 'bogus'"),
        (["ingest", "orders", "missing.csv"], "no such file"),
        (["ingest", "orders", "bad.csv", "--map", "nonsense"], "FIELD=COLUMN"),
        (["ingest", "orders", "bad.csv", "--map", "order_id=Nope"], "not in the file"),
        (["ingest", "customers", "people.csv"], "[ingest.mapping.customers]"),
        (["ingest", "orders", "bad.csv", "--timezone", "Mars/Olympus"], "unknown time zone"),
        (["ingest", "orders", "bad.txt", "--format", "xml"], "unknown format"),
    ],
)
def test_user_mistakes_are_clear_errors_not_tracebacks(tmp_path, args, message):
    proj = tmp_path / "p"
    run("init", str(proj))
    write(tmp_path / "bad.csv", "order_id,customer_id,ts\n1,c,2024-01-01\n")
    write(tmp_path / "bad.txt", "x")
    write(tmp_path / "people.csv", "name,phone\nAnn,555\n")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        r = run(*args, "-p", str(proj))
    finally:
        os.chdir(cwd)
    assert r.exit_code == 2
    assert message in r.output
    assert "Traceback" not in r.output


def test_no_project_is_a_clear_error(tmp_path):
    r = run("status", "-p", str(tmp_path / "nowhere"))
    assert r.exit_code == 2 and "segone init" in r.output


def test_sample_and_dataset_commands(tmp_path):
    r = run("sample", "--customers", "200", "--seed", "3", "--out", str(tmp_path / "s"))
    assert r.exit_code == 0 and (tmp_path / "s" / "truth" / "counts.json").exists()
    r = run("dataset", "cdnow", str(tmp_path / "cd.csv"))
    assert r.exit_code == 0 and "6,919" in r.output


@pytest.mark.slow
def test_demo_end_to_end_through_the_installed_script(tmp_path):
    exe = Path(sys.executable).parent / "segone"
    proc = subprocess.run(
        [
            str(exe),
            "demo",
            str(tmp_path / "demo"),
            "--customers",
            "800",
            "--seed",
            "2",
            "--no-serve",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "differs" not in proc.stdout and proc.stdout.count(" ok ") >= 7
    assert "cdnow_orders.csv: read 6919, loaded 6919 orders" in proc.stdout
    assert "highest expected lifetime value" in proc.stdout
    assert (
        "models: pareto_nbd v1, gamma_gamma v1, preferences v1, churn v1, next_products v1"
        in proc.stdout
    )
    assert "BG/NBD on the first 39 weeks: r=0.243, alpha=4.414, a=0.793, b=2.426" in proc.stdout
    # it ends by serving: a real server answered a decision, and the curl line is printed
    assert "decision for user_id:" in proc.stdout and "follow up on:" in proc.stdout
    assert (
        "/v1/decide" in proc.stdout and "curl -s -H 'Authorization: Bearer demo-dk-" in proc.stdout
    )

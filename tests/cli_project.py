"""A small built project for the CLI and notebook tests: 80 repeat buyers with e-mails and a
CRM stage, ingested and built through the command line."""

from __future__ import annotations

import csv
from datetime import datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from segone.cli import app

runner = CliRunner()


def _csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def make_project(tmp: Path, people: int = 80) -> Path:
    """Init, ingest orders and customers, and build (as of 2024-12-31) under ``tmp/p``."""
    start = datetime(2024, 1, 3, 9)
    orders = []
    for c in range(people):
        for k in range(1 + c % 4):
            ts = start + timedelta(days=17 * k + c % 23, hours=c % 9)
            orders.append(
                [f"c{c}", f"o{c}-{k}", ts.isoformat(), round(8 + (c * 7 + k * 3) % 60, 2)]
            )
    crm = [
        [f"c{c}", f"person{c}@example.com", ["lead", "customer", "opportunity"][c % 3]]
        for c in range(people)
    ]
    o = _csv(tmp / "orders.csv", ["customer_id", "order_id", "ts", "amount"], orders)
    cu = _csv(tmp / "crm.csv", ["customer_id", "email", "crm_stage"], crm)
    proj = tmp / "p"
    for args in (
        ["init", str(proj)],
        ["ingest", "orders", str(o), "-p", str(proj)],
        ["ingest", "customers", str(cu), "-p", str(proj)],
        ["build", "-p", str(proj), "--as-of", "2024-12-31"],
    ):
        r = runner.invoke(app, args, catch_exceptions=False)
        assert r.exit_code == 0, r.output
    return proj

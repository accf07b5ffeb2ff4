"""Helpers shared by the dashboard's browser tests and ``make screenshots``: a small demo
project built once, a real ``segone serve`` on a free port, and Debian's Chromium.

Not a test module (no ``test_`` prefix); ``tests/screenshots.py`` imports it as a script too.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ADMIN = "adm-test-5f1c0b7e9d"
WRITE = "wk-test-1a2b3c4d5e"
DECIDE = "dk-test-9z8y7x6w5v"
USER, PASSWORD = "marketer", "correct horse battery"


@dataclass(frozen=True)
class WebProject:
    root: Path
    customers: int


def make_project(root: Path, customers: int = 2000, seed: int = 7) -> WebProject:
    """A project like ``segone demo``'s: a generated store ingested, built as of the sample's
    end, three monthly lifecycle snapshots, published to the online store, keys for the server,
    and one dashboard user."""
    from segone.config import CONFIG_FILE
    from segone.datasets import SAMPLE_FILES, generate_sample
    from segone.datasets.sample import SAMPLE_TOML, SampleConfig
    from segone.ingest import ingest_file
    from segone.pipeline.backfill import backfill
    from segone.pipeline.build import build
    from segone.pipeline.publish import open_online, publish
    from segone.project import Project
    from segone.segments import project_catalogue
    from segone.web.security import add_user

    Project.init(root, exist_ok=True)
    cfg = root / CONFIG_FILE
    text = cfg.read_text(encoding="utf-8") + SAMPLE_TOML
    for name, value in (("write_keys", WRITE), ("admin_tokens", ADMIN), ("decide_tokens", DECIDE)):
        text = re.sub(rf"^{name} = \[\]", f'{name} = ["{value}"]', text, count=1, flags=re.M)
    cfg.write_text(text, encoding="utf-8")
    project = Project.open(root)
    generate_sample(root / "sample", customers=customers, seed=seed)
    with project.warehouse() as wh:
        for kind, name in SAMPLE_FILES:
            ingest_file(
                wh,
                kind,
                root / "sample" / "data" / name,
                settings=project.settings.ingest,
                identity=project.settings.identity,
            )
        end = datetime.fromisoformat(SampleConfig().end).replace(tzinfo=UTC) + timedelta(days=1)
        last = end - timedelta(microseconds=1)
        build(
            wh,
            as_of=last,
            identity=project.settings.identity,
            stages=project.settings.lifecycle,
            models=project.settings.models,
        )
        cat = project_catalogue(project, wh)
        backfill(wh, cat, last - timedelta(days=60), last, 30, project.settings.lifecycle)
        store = open_online(project.settings, create=True)
        assert store is not None
        try:
            publish(wh, store, project.settings)  # the live pages read what a build publishes
        finally:
            store.close()
    add_campaign(root, at=end - timedelta(days=45))
    add_user(root, USER, PASSWORD)
    return WebProject(root, customers)


CAMPAIGN = """
name: spring
description: One offer for all, an offer per segment, and each person's own, against a holdout
audience:
  rule: {orders: {gte: 1}}
channel: email
holdout: 0.25
arms:
  - {name: mass, kind: mass, offer: {title: "10% off"}}
  - name: by_segment
    kind: segment
    offers:
      vip: {title: "Early access"}
      default: {title: "10% off"}
  - {name: personal, kind: one_to_one, offer: {title: "Chosen for you"}}
message:
  subject: "{{ first_name or 'Hello' }}, {{ offer.title or 'for you' }}"
  text: "Hi {{ first_name }}\\n{{ unsubscribe_url }}"
  unsubscribe_url: "https://shop.example/u?c={customer_id}&t={token}"
attribution: {window_days: 30}
conversion: order
send:
  destination: {kind: file, config: {name: crm_file, path: "EXPORTS/{list_id}.csv"}}
"""


def add_campaign(root: Path, at: datetime) -> None:
    """A campaign with a mass, a segment and a one-to-one arm, and a file destination (which
    the dashboard's segment pages can sync to), run once at ``at`` (its lift is measured on the
    orders that followed)."""
    from segone.campaigns import service
    from segone.project import Project

    (root / "campaigns").mkdir(exist_ok=True)
    text = CAMPAIGN.replace("EXPORTS", str(root / "exports"))
    (root / "campaigns" / "spring.yaml").write_text(text, encoding="utf-8")
    service.run_campaign(Project.open(root), "spring", at=at)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(root: Path, log: Path) -> Iterator[str]:
    """``segone serve`` for ``root`` in a subprocess on a free port; yields its base URL."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from segone.cli import main; main()",
                "serve",
                "-p",
                str(root),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"segone serve exited: {log.read_text()[-2000:]}")
                try:
                    if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("segone serve did not start within 120 s")
                time.sleep(0.3)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def launch(playwright: object) -> object:
    """Debian's Chromium through Playwright (no downloaded browser)."""
    return playwright.chromium.launch(  # type: ignore[attr-defined]
        executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
    )


def login(page: object, url: str, *, token: str | None = ADMIN) -> None:
    """Log in through the form (with the admin token, or as the test user)."""
    page.goto(f"{url}/login")  # type: ignore[attr-defined]
    if token is not None:
        page.fill("#token", token)  # type: ignore[attr-defined]
    else:
        page.fill("#username", USER)  # type: ignore[attr-defined]
        page.fill("#password", PASSWORD)  # type: ignore[attr-defined]
    page.click("button[type=submit]")  # type: ignore[attr-defined]
    page.wait_for_load_state("load")  # type: ignore[attr-defined]


PAGES = (
    ("overview", "/"),
    ("customers", "/customers?q=a"),
    ("segments", "/segments"),
    ("builder", "/segments/new"),
    ("lifecycle", "/lifecycle"),
    ("predictions", "/predictions"),
    ("campaigns", "/campaigns"),
    ("identity", "/identity"),
    ("live", "/live"),
)

# True when every chart canvas on the page has pixels that are not all one colour
CHARTS_DRAWN = """() => {
  const charts = Array.from(document.querySelectorAll('[data-chart]'));
  return charts.map(el => {
    const c = el.querySelector('canvas');
    if (!c || !c.width || !c.height) return false;
    const ctx = c.getContext('2d');
    const d = ctx.getImageData(0, 0, c.width, c.height).data;
    let painted = 0;
    for (let i = 3; i < d.length; i += 4 * 7) { if (d[i] > 0) painted++; }
    return painted > 50;
  });
}"""

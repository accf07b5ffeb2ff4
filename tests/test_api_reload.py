"""``segone serve`` serves the last build without a restart: a build made before any server
existed (so it published nothing) is published when the server starts, and a build made while
the server runs is served within seconds."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from segone.datasets import SAMPLE_FILES, generate_sample
from segone.datasets.sample import SAMPLE_TOML
from segone.ingest import ingest_file
from segone.pipeline.build import build_project
from segone.project import Project

ADMIN = "ak_reload_test"
WRITE = "wk_reload_test"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    root = tmp_path_factory.mktemp("reload")
    sample = root / "sample"
    generate_sample(sample, customers=150, seed=7)
    proj = Project.init(root / "proj")
    cfg = proj.root / "segone.toml"
    # the predictive models are not what this is about (and they take most of a build)
    cfg.write_text(cfg.read_text().replace("enabled = true", "enabled = false") + SAMPLE_TOML)
    proj = Project.open(proj.root)
    with proj.warehouse() as wh:
        for kind, name in SAMPLE_FILES:
            ingest_file(wh, kind, sample / "data" / name, settings=proj.settings.ingest)
    shutil.rmtree(sample)
    result, pub = build_project(proj)  # no server has run: no online store, nothing published
    assert result.profiles > 0 and pub is None
    assert not (proj.root / "online.db").exists()
    return proj


@pytest.mark.slow
def test_serve_publishes_the_first_build_and_follows_the_next(project: Project) -> None:
    with project.warehouse(read_only=True) as wh:
        emails = wh.execute(
            wh.table("customer_map").filter(lambda t: t.id_type == "email").limit(1)
        )
    email = str(emails.node[0])  # "email:..."
    port = _port()
    url = f"http://127.0.0.1:{port}"
    log = project.root / "server.log"
    env = {**os.environ, "SEGONE_ADMIN_TOKENS": ADMIN, "SEGONE_WRITE_KEYS": WRITE}
    with log.open("wb") as f:
        cmd = [sys.executable, "-m", "segone.api.server", "-p", str(project.root)]
        proc = subprocess.Popen(
            [*cmd, "--port", str(port)], stdout=f, stderr=subprocess.STDOUT, env=env
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        h = {"Authorization": f"Bearer {ADMIN}"}
        r = httpx.get(f"{url}/v1/profiles/{email}", headers=h, timeout=10)
        assert r.status_code == 200, r.text
        first = r.json()["published_at"]
        assert first is not None  # the build's results, not only live data

        # a build while the server runs publishes to its store; the server serves it at once
        result, pub = build_project(project)
        assert pub is not None and pub.published == result.profiles
        deadline = time.monotonic() + 10
        while True:
            r = httpx.get(f"{url}/v1/profiles/{email}", headers=h, timeout=10)
            assert r.status_code == 200, r.text
            if r.json()["published_at"] != first:
                break
            assert time.monotonic() < deadline, "the server still serves the first build"
            time.sleep(0.2)
        assert proc.poll() is None  # the same process: no restart
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert "published the last build to the online store" in log.read_text()

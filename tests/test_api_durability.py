"""An acknowledged event is never lost: the server (a real process) is SIGKILLed while client
threads post events; after a restart every message id that got a 200 is in the online store.
The server's writer process exits with it. Killing the writer process alone costs only the
requests in flight (503, not acknowledged): the server starts another and keeps serving.

Runs on SQLite (WAL, synchronous=FULL) always, and on PostgreSQL when SEGONE_TEST_POSTGRES_URL
is set (a fresh schema per run, dropped afterwards).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from segone.online.store import OnlineStore
from tests import _servers
from tests._servers import free_port, gone, stop, writer_of

WRITE_KEY = "wk_durable"
ADMIN = "adm_durable"
PII = "carol.pii@example.com"
PG_URL = os.environ.get("SEGONE_TEST_POSTGRES_URL")


def start_server(root: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    return _servers.start_server(
        root, port, log, {"SEGONE_WRITE_KEYS": WRITE_KEY, "SEGONE_ADMIN_TOKENS": ADMIN}
    )


def post_until_refused(url: str, acked: list[str], worker: int, stop_at: float) -> None:
    """Post single events and batches of 5; record the ids of each request answered 200."""
    with httpx.Client(base_url=url, auth=(WRITE_KEY, ""), timeout=10) as http:
        i = 0
        while time.monotonic() < stop_at:
            i += 1
            n = 1 if i % 2 else 5
            batch: list[dict[str, Any]] = [
                {
                    "type": "track",
                    "userId": f"w{worker}-u{i % 7}",
                    "event": "Product Viewed",
                    "properties": {"category": "shoes", "i": i},
                    "messageId": str(uuid.uuid4()),
                }
                for _ in range(n)
            ]
            try:
                if n == 1:
                    r = http.post("/v1/track", json=batch[0])
                else:
                    r = http.post("/v1/batch", json={"batch": batch})
            except httpx.TransportError:
                return  # the server is gone: whatever was not acknowledged may be lost
            if r.status_code == 200:
                acked.extend(m["messageId"] for m in batch)


def load(
    url: str, workers: int, seconds: float, at_least: int
) -> tuple[list[list[str]], list[threading.Thread]]:
    """Client threads posting events for ``seconds``; returns once ``at_least`` are acked."""
    acked: list[list[str]] = [[] for _ in range(workers)]
    stop_at = time.monotonic() + seconds
    threads = [
        threading.Thread(target=post_until_refused, args=(url, acked[w], w, stop_at))
        for w in range(workers)
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while sum(map(len, acked)) < at_least and time.monotonic() < deadline:
        time.sleep(0.02)
    return acked, threads


def run_kill_test(root: Path, online_url: str) -> None:
    (root / "segone.toml").write_text(f'[server]\nonline_url = "{online_url}"\n')
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = root / "server.log"
    proc = start_server(root, port, log)
    writer = writer_of(proc.pid)
    acked: list[list[str]] = []
    threads: list[threading.Thread] = []
    try:
        acked, threads = load(url, 6, 30, at_least=300)
        proc.send_signal(signal.SIGKILL)  # under load: requests are in flight
        proc.wait()
        for t in threads:
            t.join(timeout=30)
    finally:
        stop(proc)
    ids = [m for a in acked for m in a]
    assert len(ids) >= 300, f"only {len(ids)} events were acknowledged before the kill"
    # its writer process does not outlive it (it would hold the SQLite write lock)
    assert gone(writer), "the writer process outlived the killed server"

    proc = start_server(root, port, log)  # recovery after the crash
    try:
        store = OnlineStore.open(online_url, root=root)
        try:
            with store.read() as tx:
                present = tx.events.seen(ids)
        finally:
            store.close()
        lost = set(ids) - present
        assert not lost, f"{len(lost)} of {len(ids)} acknowledged events lost"
        # and the restarted server knows them: sending them again changes nothing
        with httpx.Client(base_url=url, auth=(WRITE_KEY, ""), timeout=10) as http:
            again = [
                {"type": "track", "userId": "x", "event": "Product Viewed", "messageId": m}
                for m in ids[:200]
            ]
            r = http.post("/v1/batch", json={"batch": again})
            assert r.status_code == 200, r.text
            assert (r.json()["accepted"], r.json()["duplicates"]) == (0, len(again))
            # the access log of `serve` shows requests, never identifiers or client addresses
            h = {"Authorization": f"Bearer {ADMIN}"}
            path = f"{url}/v1/profiles/email:{PII}"
            assert httpx.get(f"{path}?email={PII}", headers=h).status_code == 404
            assert httpx.get(path).status_code == 401
        writer = writer_of(proc.pid)
    finally:
        stop(proc)
    assert gone(writer), "the writer process outlived a stopped server"
    text = log.read_text()
    assert "POST /v1/track 200" in text and "POST /v1/batch 200" in text
    assert "GET /v1/profiles/{identifier}?{query} 404" in text
    assert "GET /v1/profiles/{identifier} 401" in text
    assert "carol" not in text
    access = [line for line in text.splitlines() if "segone.api.access" in line]
    assert access and not any("127.0.0.1" in line for line in access)


@pytest.mark.slow
def test_a_killed_writer_process_is_replaced_and_loses_nothing(tmp_path: Path) -> None:
    (tmp_path / "segone.toml").write_text(
        f'[server]\nonline_url = "sqlite:///{tmp_path / "online.db"}"\n'
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    proc = start_server(tmp_path, port, log)
    try:
        first = writer_of(proc.pid)
        acked, threads = load(url, 4, 6, at_least=100)
        os.kill(first, signal.SIGKILL)  # mid-load: its requests in flight get a 503
        for t in threads:
            t.join(timeout=30)
        assert proc.poll() is None, "the server died with its writer"
        second = writer_of(proc.pid)
        assert second != first
        ids = [m for a in acked for m in a]
        # a request now waits for the new writer (up to 10 s; the SDKs retry a 503 after that,
        # as this loop does, should the new writer be slow to start on a loaded machine)
        deadline = time.monotonic() + 60
        with httpx.Client(base_url=url, auth=(WRITE_KEY, ""), timeout=30) as http:
            while True:
                r = http.post("/v1/track", json={"type": "track", "userId": "after", "event": "E"})
                if r.status_code != 503 or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert r.status_code == 200, r.text
        store = OnlineStore.open(f"sqlite:///{tmp_path / 'online.db'}")
        try:
            with store.read() as tx:
                lost = set(ids) - tx.events.seen(ids)
        finally:
            store.close()
        assert not lost, f"{len(lost)} of {len(ids)} acknowledged events lost"
        assert "starting another" in log.read_text()
    finally:
        stop(proc)


@pytest.mark.slow
def test_sigkill_loses_no_acknowledged_event_sqlite(tmp_path: Path) -> None:
    run_kill_test(tmp_path, f"sqlite:///{tmp_path / 'online.db'}")


@pytest.mark.slow
@pytest.mark.skipif(
    not PG_URL,
    reason="PostgreSQL durability test: set SEGONE_TEST_POSTGRES_URL, e.g. "
    "postgresql://postgres@127.0.0.1:5432/test",
)
def test_sigkill_loses_no_acknowledged_event_postgres(tmp_path: Path) -> None:
    import psycopg

    assert PG_URL is not None
    schema = f"segone_test_api_{uuid.uuid4().hex[:12]}"
    sep = "&" if "?" in PG_URL else "?"
    try:
        run_kill_test(tmp_path, f"{PG_URL}{sep}schema={schema}")
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

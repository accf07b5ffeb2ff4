"""Webhook delivery to a real HTTP receiver on localhost: signed, retried, dead-lettered."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from segone.live.webhooks import (
    ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookDispatcher,
    sign,
    verify,
)
from tests.test_live_identity import open_store

SECRET = "s3cret"
NOW = datetime(2025, 1, 1, tzinfo=UTC)
PAYLOAD = {"kind": "segment_entered", "segment": "vip", "from": None, "to": None, "detail": {}}


class Receiver:
    """An HTTP endpoint that fails the first ``fail`` requests (500), then answers 200."""

    def __init__(self, fail: int) -> None:
        self.fail = fail
        self.requests: list[tuple[dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append((dict(self.headers), body))
                ok = len(outer.requests) > outer.fail
                self.send_response(200 if ok else 500)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def store(tmp_path):
    s, cleanup = open_store("sqlite", tmp_path)
    yield s
    cleanup()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request, tmp_path):
    s, cleanup = open_store(request.param, tmp_path)
    yield s
    cleanup()


def _enqueue(store, n=1):
    with store.write() as tx:
        return [tx.outbox.enqueue(f"cus_{i}", "segment_entered", PAYLOAD, NOW) for i in range(n)]


def _rounds(d, start, rounds, step):
    async def go():
        tried = []
        for k in range(rounds):
            tried.append(await d.run_once(start + k * step))
        await d.aclose()
        return tried

    return asyncio.run(go())


def test_fails_twice_then_delivers_signed(store):
    rx = Receiver(fail=2)
    try:
        (oid,) = _enqueue(store)
        d = WebhookDispatcher(store, rx.url, SECRET, backoff_seconds=10, random_state=0)
        # one round per minute: every retry is due by the next round
        assert _rounds(d, NOW, 4, timedelta(minutes=1)) == [1, 1, 1, 0]
    finally:
        rx.close()
    assert len(rx.requests) == 3
    with store.read() as tx:
        assert tx.count("outbox") == 0 and tx.outbox.dead_letters() == []
    headers, body = rx.requests[-1]
    assert headers[ID_HEADER] == f"msg_{oid}"
    assert verify(
        SECRET, headers[ID_HEADER], headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER]
    )
    doc = json.loads(body)
    assert doc == {
        "id": oid,
        "kind": "segment_entered",
        "person_id": "cus_0",
        "payload": PAYLOAD,
        "created_at": "2025-01-01T00:00:00.000000+00:00",
    }
    # the same delivery each time (receivers de-duplicate on id)
    assert {json.loads(b)["id"] for _, b in rx.requests} == {oid}
    assert {h[ID_HEADER] for h, _ in rx.requests} == {f"msg_{oid}"}


def test_backoff_grows_exponentially_with_jitter(store):
    rx = Receiver(fail=100)
    try:
        _enqueue(store)
        d = WebhookDispatcher(store, rx.url, SECRET, backoff_seconds=10, random_state=1)
        t = NOW
        delays = []
        for _ in range(3):
            assert _rounds(d, t, 1, timedelta(0)) == [1]
            with store.read() as tx:
                assert tx.outbox.due(t + timedelta(seconds=1), 10) == []  # not due again at once
                (row,) = tx._sql.rows("SELECT next_attempt_at FROM outbox")
            nxt = datetime.fromisoformat(row[0])
            delays.append((nxt - t).total_seconds())
            t = nxt
    finally:
        rx.close()
    for k, delay in enumerate(delays):  # 10 s, 20 s, 40 s, each times 0.75..1.25
        assert 10 * 2**k * 0.75 <= delay <= 10 * 2**k * 1.25
    assert len({round(delay / 2**k, 6) for k, delay in enumerate(delays)}) > 1  # jittered


def test_always_failing_goes_to_the_dead_letters(any_store):
    store = any_store
    rx = Receiver(fail=10**6)
    try:
        (oid,) = _enqueue(store)
        d = WebhookDispatcher(store, rx.url, SECRET, max_attempts=3, backoff_seconds=1)
        assert _rounds(d, NOW, 5, timedelta(hours=1)) == [1, 1, 1, 0, 0]
    finally:
        rx.close()
    assert len(rx.requests) == 3
    with store.read() as tx:
        (dead,) = tx.outbox.dead_letters()
        assert tx.count("outbox") == 0
    assert dead.id == oid and dead.attempts == 3 and dead.last_error == "HTTP 500"
    assert dead.payload == PAYLOAD


def test_unreachable_receiver_counts_as_a_failed_attempt(store):
    rx = Receiver(fail=0)
    url = rx.url
    rx.close()  # nothing listens there any more
    _enqueue(store)
    d = WebhookDispatcher(store, url, SECRET, max_attempts=2, backoff_seconds=1, timeout=2)
    assert _rounds(d, NOW, 2, timedelta(hours=1)) == [1, 1]
    with store.read() as tx:
        (dead,) = tx.outbox.dead_letters()
    assert dead.last_error == "ConnectError"


def test_run_forever_delivers_until_stopped(store):
    rx = Receiver(fail=0)
    try:
        _enqueue(store, 3)
        d = WebhookDispatcher(store, rx.url, SECRET, poll_seconds=0.05)

        async def go():
            stop = asyncio.Event()
            task = asyncio.create_task(d.run_forever(stop))
            for _ in range(100):
                await asyncio.sleep(0.05)
                if len(rx.requests) == 3:
                    break
            stop.set()
            await asyncio.wait_for(task, 5)

        asyncio.run(go())
    finally:
        rx.close()
    assert sorted(json.loads(b)["person_id"] for _, b in rx.requests) == ["cus_0", "cus_1", "cus_2"]
    with store.read() as tx:
        assert tx.count("outbox") == 0


def test_verify_rejects_forgeries_and_replays():
    body = b'{"id":1}'
    ts = str(int(time.time()))
    good = sign(SECRET, "msg_1", ts, body)
    assert good.startswith("v1,") and len(good) == 3 + 44
    assert verify(SECRET, "msg_1", ts, body, good)
    assert verify(SECRET, "msg_1", ts, body.decode(), good)
    assert not verify("other", "msg_1", ts, body, good)
    assert not verify(SECRET, "msg_2", ts, body, good)
    assert not verify(SECRET, "msg_1", ts, b'{"id":2}', good)
    assert not verify(SECRET, "msg_1", str(int(ts) + 1), body, good)
    assert not verify(SECRET, "msg_1", "yesterday", body, good)
    old = str(int(time.time()) - 3600)
    assert not verify(SECRET, "msg_1", old, body, sign(SECRET, "msg_1", old, body))  # a replay
    assert verify(SECRET, "msg_1", old, body, sign(SECRET, "msg_1", old, body), tolerance_s=7200)

"""The real-time loop through the real server: events change a person's segments and stage at
once, triggers reach a webhook receiver (signed), and /v1/decide answers from the live profile
and the published batch results, within consent and caps, learning from /v1/feedback."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from segone.api import background_server, create_app
from segone.config import Settings
from segone.online.engine import Engine
from segone.online.store import OnlineStore
from segone.signing import verify_headers

WRITE, DECIDE, ADMIN, SECRET = "wk-test", "dk-test", "adm-test", "hook-secret"


class Receiver(BaseHTTPRequestHandler):
    got: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.got.append(({k: v for k, v in self.headers.items()}, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def hook() -> Iterator[str]:
    srv = HTTPServer(("127.0.0.1", 0), Receiver)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/hook"
    srv.shutdown()
    srv.server_close()


# every test runs with the writes on a writer process (what `segone serve` does) and on a
# writer thread ([server] writer = "thread")
@pytest.fixture(scope="module", params=["process", "thread"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, hook: str
) -> Iterator[httpx.Client]:
    root: Path = tmp_path_factory.mktemp("realtime")
    settings = Settings.from_dict(
        root,
        {
            "server": {
                "online_url": f"sqlite:///{root / 'online.db'}",
                "write_keys": [WRITE],
                "decide_tokens": [DECIDE],
                "admin_tokens": [ADMIN],
                "webhook_url": hook,
                "webhook_secret": SECRET,
                "webhook_backoff_seconds": 0.2,
                "frequency_cap_per_day": 2,
                "writer": request.param,
            }
        },
    )
    store = OnlineStore.open(settings.server.online_url)
    # what a build would have published: a catalogue, and one known customer who consented
    # to e-mail, with recommendations and a churned stage
    now = datetime.now(UTC)
    items = {
        f"p{i}": {"category": "Books" if i < 5 else "Garden", "popularity": 0.01} for i in range(20)
    }
    with store.write() as tx:
        tx.docs.put("catalogue", items)
        tx.docs.put(
            "published",
            {
                "cus_1": {
                    "customer_id": "cus_1",
                    "orders": 3,
                    "revenue": 90.0,
                    "first_order_at": "2024-01-01T00:00:00+00:00",
                    "last_order_at": "2024-03-01T00:00:00+00:00",
                    "previous_order_at": "2024-02-01T00:00:00+00:00",
                    "mean_gap_days": 30.0,
                    "last_gap_days": 29.0,
                    "prior_gap_days": 31.0,
                    "consent_email": True,
                    "consent_sms": False,
                    "lifecycle_stage": "churned",
                    "p_email_click": 0.2,
                    "recommendations": [
                        {"rank": 1, "product_id": "p7", "score": 0.9, "reason": "bought with p1"}
                    ],
                    "segments": [],
                    "_cursor": 0,
                }
            },
        )
        tx.identity.link("user_id:u1", "cus_1", "batch")
        tx.meta.set("published_version", now.isoformat())
    app = create_app(settings, Engine(store, settings))
    with background_server(app) as url, httpx.Client(base_url=url, timeout=10) as http:
        yield http
    store.close()


def _track(http: httpx.Client, **msg: Any) -> None:
    r = http.post("/v1/track", json=msg, auth=(WRITE, ""))
    assert r.status_code == 200, r.text


def _decide(http: httpx.Client, **body: Any) -> dict[str, Any]:
    r = http.post("/v1/decide", json=body, headers={"Authorization": f"Bearer {DECIDE}"})
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_an_order_reactivates_and_the_trigger_is_delivered_signed(server: httpx.Client) -> None:
    Receiver.got.clear()
    _track(
        server,
        userId="u1",
        event="Order Completed",
        properties={
            "order_id": "o-live-1",
            "total": 30,
            "products": [{"product_id": "p1", "category": "Books"}],
        },
    )
    prof = server.get(
        "/v1/profiles/user_id:u1", headers={"Authorization": f"Bearer {ADMIN}"}
    ).json()
    assert prof["person_id"] == "cus_1" and prof["profile"]["orders"] == 4
    assert prof["lifecycle_stage"] == "reactivated"
    kinds = [j["kind"] for j in prof["journey"]]
    assert "stage_changed" in kinds
    deadline = time.monotonic() + 10
    while not any(b"stage_changed" in b for _, b in Receiver.got) and time.monotonic() < deadline:
        time.sleep(0.05)
    headers, body = next((h, b) for h, b in Receiver.got if b"stage_changed" in b)
    assert verify_headers(SECRET, headers, body)
    doc = json.loads(body)
    assert doc["person_id"] == "cus_1" and doc["payload"]["to"] == "reactivated"
    assert b"u1" not in body  # no identifier beyond the person id


def test_decide_uses_batch_recommendations_consent_and_caps(server: httpx.Client) -> None:
    first = _decide(server, identifier="user_id:u1", placement="home", limit=3)
    ids = [i["id"] for i in first["items"]]
    assert len(ids) == 3 and "p1" not in ids  # bought live just now: not offered again
    assert all(0 < i["propensity"] <= 1 and i["reasons"] for i in first["items"])
    assert first["channel"]["name"] == "email"  # the only consented channel
    second = _decide(server, identifier="user_id:u1", placement="home")
    assert second["channel"]["name"] == "email"
    third = _decide(server, identifier="user_id:u1", placement="home")
    assert third["channel"]["name"] is None and "capped" in third["channel"]["reason"]
    # an unknown visitor gets an answer too, without a channel
    anon = _decide(server, identifier="anonymous_id:never-seen", placement="home")
    assert anon["items"] and anon["channel"]["name"] is None


def test_feedback_updates_the_policy_at_once(server: httpx.Client) -> None:
    d = _decide(server, identifier="user_id:u1", placement="product", limit=1)
    item = d["items"][0]["id"]
    auth = {"Authorization": f"Bearer {DECIDE}"}
    for kind in ("impression", "click"):
        r = server.post(
            "/v1/feedback",
            json={"decision_id": d["decision_id"], "item_id": item, "kind": kind},
            headers=auth,
        )
        assert r.status_code == 200, r.text
    # an item that was not shown, and an unknown decision, are refused
    r = server.post(
        "/v1/feedback",
        json={"decision_id": d["decision_id"], "item_id": "nope", "kind": "click"},
        headers=auth,
    )
    assert r.status_code == 400 and r.json()["error"]["status"] == 400
    r = server.post(
        "/v1/feedback",
        json={"decision_id": "missing", "item_id": item, "kind": "click"},
        headers=auth,
    )
    assert r.status_code == 404


def test_erase_removes_the_person_from_the_server(server: httpx.Client) -> None:
    _track(server, anonymousId="a-erase", event="Product Viewed", properties={"category": "Garden"})
    admin = {"Authorization": f"Bearer {ADMIN}"}
    assert server.get("/v1/profiles/anonymous_id:a-erase", headers=admin).status_code == 200
    assert server.delete("/v1/profiles/anonymous_id:a-erase", headers=admin).status_code == 200
    assert server.get("/v1/profiles/anonymous_id:a-erase", headers=admin).status_code == 404


def test_suppression_lists_are_respected(server: httpx.Client) -> None:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    # u2 consented to e-mail; their e-mail address is suppressed, and one item is
    _track(server, userId="u2", event="Product Viewed", properties={"category": "Books"})
    r = server.post(
        "/v1/identify",
        json={"userId": "u2", "traits": {"email": "U2@Example.com", "emailOptIn": True}},
        auth=(WRITE, ""),
    )
    assert r.status_code == 200, r.text
    assert _decide(server, identifier="user_id:u2", placement="home")["channel"]["name"] == "email"
    r = server.put(
        "/v1/suppressions/email:u2@example.com",
        json={"channels": ["email"], "items": ["p3"], "reason": "unsubscribed"},
        headers=admin,
    )
    assert r.status_code == 200 and r.json()["identifier"] == "email:u2@example.com"
    for _ in range(5):
        d = _decide(server, identifier="user_id:u2", placement="home", limit=10)
        assert d["channel"]["name"] is None and "suppressed" in d["channel"]["reason"]
        assert "p3" not in [i["id"] for i in d["items"]]
    # an identifier without its kind is refused; a write key cannot suppress; lifting works
    bare = server.put("/v1/suppressions/u2@example.com", json={}, headers=admin)
    assert bare.status_code == 400 and bare.json()["error"]["status"] == 400
    wk = server.put("/v1/suppressions/email:x@example.com", json={}, auth=(WRITE, ""))
    assert wk.status_code in (401, 403)
    assert server.delete("/v1/suppressions/email:u2@example.com", headers=admin).status_code == 200
    assert server.get("/v1/suppressions/email:u2@example.com", headers=admin).status_code == 404

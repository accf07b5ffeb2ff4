"""The two real SDKs, unchanged, pointed at the real server (uvicorn on loopback, real Engine,
real SQLite file): identify/track/page/alias delivered in flushed batches, and the resulting
profiles, read back through GET /v1/profiles, are right.

What they send (read from their source in .venv and checked on the wire below):
- segment-analytics-python: POST /v1/batch, Basic auth (write key as user name), writeKey
  and sentAt in the body, identify traits at the top level, no gzip by default.
- rudder-sdk-python: POST /v1/batch gzip-compressed, Basic auth, no writeKey in the body,
  identify traits only in context.traits.
"""

from __future__ import annotations

import gzip
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from rudderstack.analytics.client import Client as RudderClient  # type: ignore[import-untyped]
from segment.analytics.client import Client as SegmentClient  # type: ignore[import-untyped]
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from segone.api import background_server, create_app
from segone.config import Settings
from segone.online.engine import Engine
from segone.online.store import OnlineStore

WRITE_KEY = "wk_sdk"
ADMIN = "adm_sdk"


@dataclass
class Seen:
    """A request as it arrived on the wire."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int = 0

    def json(self) -> Any:
        raw = self.body
        if self.headers.get("content-encoding") == "gzip":
            raw = gzip.decompress(raw)
        return orjson.loads(raw)


@dataclass
class Recorder:
    """ASGI wrapper around the real app that keeps a copy of each tracking request."""

    app: ASGIApp
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/batch"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        rec = Seen(scope["path"], {k.decode(): v.decode() for k, v in scope["headers"]}, b"")

        async def recv() -> Message:
            msg = await receive()
            if msg["type"] == "http.request":
                chunks.append(msg.get("body", b""))
            return msg

        async def snd(msg: Message) -> None:
            if msg["type"] == "http.response.start":
                rec.status = msg["status"]
            await send(msg)

        await self.app(scope, recv, snd)
        rec.body = b"".join(chunks)
        with self.lock:
            self.seen.append(rec)


@dataclass
class Server:
    url: str
    recorder: Recorder
    http: httpx.Client

    def profile(self, identifier: str) -> dict[str, Any]:
        r = self.http.get(
            f"/v1/profiles/{identifier}", headers={"Authorization": f"Bearer {ADMIN}"}
        )
        assert r.status_code == 200, r.text
        return dict(r.json())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root: Path = tmp_path_factory.mktemp("api_sdks")
    settings = Settings.from_dict(
        root,
        {
            "server": {
                "online_url": f"sqlite:///{root / 'online.db'}",
                "write_keys": [WRITE_KEY],
                "admin_tokens": [ADMIN],
            }
        },
    )
    store = OnlineStore.open(settings.server.online_url)
    recorder = Recorder(create_app(settings, Engine(store, settings)))
    with background_server(recorder) as url, httpx.Client(base_url=url, timeout=10) as http:
        yield Server(url, recorder, http)
    store.close()


Factory = Callable[[str, list[Any]], Any]


def segment_client(url: str, errors: list[Any], gzip: bool = False) -> Any:
    return SegmentClient(
        WRITE_KEY,
        host=url,
        gzip=gzip,
        upload_interval=0.05,
        max_retries=1,
        on_error=lambda e, batch: errors.append(e),
    )


def rudder_client(url: str, errors: list[Any]) -> Any:
    return RudderClient(
        WRITE_KEY,
        host=url,
        upload_interval=0.05,
        max_retries=1,
        on_error=lambda e, batch: errors.append(e),
    )


SDKS: dict[str, Factory] = {
    "segment": segment_client,
    "segmentgzip": lambda url, errors: segment_client(url, errors, gzip=True),
    "rudder": rudder_client,
}


@pytest.fixture(autouse=True)
def _quiet_sdk_loggers() -> Iterator[None]:
    # both SDKs log at DEBUG what they queue (traits included): keep them at WARNING
    levels = {n: logging.getLogger(n).level for n in ("segment", "rudderstack")}
    for n in levels:
        logging.getLogger(n).setLevel(logging.WARNING)
    yield
    for n, lvl in levels.items():
        logging.getLogger(n).setLevel(lvl)


@pytest.mark.parametrize("sdk", list(SDKS))
def test_sdk_delivers_and_profiles_are_right(server: Server, sdk: str) -> None:
    errors: list[Any] = []
    client = SDKS[sdk](server.url, errors)
    user, anon, anon2 = f"{sdk}-user-1", f"{sdk}-anon-1", f"{sdk}-anon-2"
    email = f"Jane.{sdk.title()}@Example.com"
    start = len(server.recorder.seen)
    try:
        client.page(anonymous_id=anon, name="Home", properties={"path": "/"})
        client.track(
            anonymous_id=anon,
            event="Product Viewed",
            properties={"product_id": "p-1", "category": "Shoes > Running", "price": 80.0},
        )
        client.identify(
            user_id=user, anonymous_id=anon, traits={"email": email, "firstName": "Jane"}
        )
        client.track(
            user_id=user,
            event="Product Viewed",
            properties={"product_id": "p-2", "category": "Shoes > Trail", "price": 120.0},
        )
        client.flush()
        client.alias(previous_id=anon2, user_id=user)
        client.page(anonymous_id=anon2, name="Pricing", properties={"path": "/pricing"})
        client.track(
            anonymous_id=anon2,
            event="Order Completed",
            properties={
                "order_id": f"{sdk}-o-1",
                "total": 200.0,
                "products": [
                    {
                        "product_id": "p-2",
                        "category": "Shoes > Trail",
                        "price": 100.0,
                        "quantity": 2,
                    }
                ],
            },
        )
        client.flush()
    finally:
        client.join()
    assert errors == []

    sent = server.recorder.seen[start:]
    assert sent and all(r.status == 200 for r in sent)
    assert all(r.headers["authorization"].startswith("Basic ") for r in sent)
    bodies = [r.json() for r in sent]
    messages = [m for b in bodies for m in b["batch"]]
    assert [m["type"] for m in messages] == [
        "page",
        "track",
        "identify",
        "track",
        "alias",
        "page",
        "track",
    ]
    assert any(len(b["batch"]) > 1 for b in bodies)  # flushed as real batches
    identify = next(m for m in messages if m["type"] == "identify")
    if sdk.startswith("segment"):
        gzipped = sdk == "segmentgzip"
        assert all((r.headers.get("content-encoding") == "gzip") == gzipped for r in sent)
        assert all(b.get("writeKey") == WRITE_KEY for b in bodies)
        assert identify["traits"]["email"] == email
    else:
        assert all(r.headers.get("content-encoding") == "gzip" for r in sent)
        assert all("writeKey" not in b for b in bodies)
        assert "traits" not in identify and identify["context"]["traits"]["email"] == email

    prof = server.profile(f"user_id:{user}")
    # one person, whichever identifier is asked
    for ident in (f"anonymous_id:{anon}", f"anonymous_id:{anon2}", f"email:{email}"):
        assert server.profile(ident)["person_id"] == prof["person_id"]
    assert {
        f"user_id:{user}",
        f"anonymous_id:{anon}",
        f"anonymous_id:{anon2}",
        f"email:{email.lower()}",
    } <= set(prof["identifiers"])
    check_profile(prof["profile"])


def check_profile(view: dict[str, Any]) -> None:
    """Counters and traits of the live profile after the scenario above: 7 events from two
    devices (anonymous ids), stitched to one account with one e-mail, one order of 2 items."""
    expected = {
        "events": 7,
        "page_views": 2,
        "pricing_views": 1,
        "orders": 1,
        "revenue": 200.0,
        "items": 2,
        "categories_bought": ["Shoes > Trail"],
        # the affinity is the preference model's, from a build: none for a person seen live
        "top_category": None,
        "category_affinity": None,
        "identifiers": 4,
        "emails": 1,
        "devices": 2,
        "has_account": True,
        "first_name": "Jane",
        "lifecycle_stage": "new",
    }
    assert {k: view.get(k) for k in expected} == expected
    assert view["first_event_at"] <= view["first_order_at"] == view["last_event_at"]

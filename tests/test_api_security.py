"""Security of the real server: every route checks its key's scope, keys made with
``segone keys`` (hashed) work and stop working when revoked or rotated, rate limits answer 429
with ``Retry-After``, CORS preflights and origins per key, request ids, body limits on every
route, fast path and FastAPI routes alike."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import Request
from fastapi.routing import APIRoute

from segone.api import background_server, create_app
from segone.api.app import PUBLIC_PATHS, ROUTE_SCOPES
from segone.api.keys import SCOPES, KeyFile
from segone.config import Settings
from segone.online.engine import Engine
from segone.online.store import OnlineStore

SITE = "https://shop.example.com"
OTHER_SITE = "https://elsewhere.example.org"
ALL_SITES = "https://partner.example.net"  # allowed for every key ([server] cors_origins)


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Server:
    url: str
    app: Any
    keys: KeyFile
    secrets: dict[str, str]  # name -> secret
    ids: dict[str, str]  # name -> key id
    http: httpx.Client

    def track(self, key: str, **headers: str) -> httpx.Response:
        body = {"userId": "u-sec", "event": "Viewed", "messageId": str(uuid.uuid4())}
        return self.http.post("/v1/track", json=body, headers={**basic(key), **headers})


@pytest.fixture(scope="module", params=["fast path", "routes"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    root: Path = tmp_path_factory.mktemp("security")
    keys = KeyFile(root / "keys.json")
    secrets: dict[str, str] = {}
    ids: dict[str, str] = {}
    for name, kind, kw in (
        ("write", "write", {"origins": [SITE]}),
        ("decide", "decide", {}),
        ("admin", "admin", {}),
        ("reader", "admin", {"scopes": ["read"]}),
        ("slow", "write", {"rate_per_second": 0.5, "burst": 2}),
        ("doomed", "write", {}),
        ("rotated", "decide", {}),
    ):
        record, secret = keys.create(kind, name=name, **kw)
        secrets[name], ids[name] = secret, record.id
    settings = Settings.from_dict(
        root,
        {
            "server": {
                "online_url": f"sqlite:///{root / 'online.db'}",
                "writer": "thread",
                "cors_origins": [ALL_SITES],
                "write_keys": ["wk_from_settings"],
            }
        },
    )
    store = OnlineStore.open(settings.server.online_url)
    app = create_app(settings, Engine(store, settings))
    if request.param == "routes":
        app.fast = None

    @app.post("/test/echo")  # a route another module adds, reading its body its own way
    async def echo(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    with background_server(app) as url, httpx.Client(base_url=url, timeout=20) as http:
        yield Server(url, app, keys, secrets, ids, http)
    store.close()


def _path(route: APIRoute) -> str:
    return route.path.replace("{identifier:path}", "user_id:nobody").replace(
        "{identifier}", "user_id:nobody"
    )


def test_every_route_declares_its_scope(server: Server) -> None:
    """A route of the API (under /v1) that is not in ROUTE_SCOPES would have no scope to check:
    none may be missing (a module adding /v1 routes adds their scopes, and checks them with
    ``segone.api.app.authorize``)."""
    for route in server.app.routes:
        if not isinstance(route, APIRoute) or not route.path.startswith("/v1/"):
            continue
        for method in route.methods:
            assert (method, route.path) in ROUTE_SCOPES, f"{method} {route.path} has no scope"
    assert set(ROUTE_SCOPES.values()) <= set(SCOPES)
    assert not {p for _, p in ROUTE_SCOPES} & PUBLIC_PATHS


@pytest.mark.parametrize("key", ["write", "decide", "admin", "reader"])
def test_every_route_checks_the_scope_of_every_key(server: Server, key: str) -> None:
    scopes = {
        "write": {"ingest"},
        "decide": {"decide"},
        "admin": {"decide", "read", "erase", "admin"},
        "reader": {"read"},
    }[key]
    secret = server.secrets[key]
    checked = 0
    for route in server.app.routes:
        if not isinstance(route, APIRoute) or not route.path.startswith("/v1/"):
            continue
        for method in route.methods:
            needed = ROUTE_SCOPES[(method, route.path)]
            auth = basic(secret) if needed == "ingest" else bearer(secret)
            body = (
                {"type": "track", "userId": "u-scope", "event": "Scoped"}
                if needed == "ingest"
                else {"channels": "*"}
            )
            if route.path.endswith("/batch") or route.path.endswith("/b"):
                body = {"batch": [{"type": "track", "userId": "u-scope", "event": "Scoped"}]}
            r = server.http.request(
                method,
                _path(route),
                json=body if method in ("POST", "PUT") else None,
                headers=auth,
            )
            if needed in scopes:
                assert r.status_code not in (401, 403), (method, route.path, r.text)
            else:
                assert r.status_code in (401, 403), (key, method, route.path, r.status_code)
                assert r.json()["error"]["code"] in ("unauthorized", "forbidden")
            checked += 1
    assert checked >= 20


def test_decide_tokens_cannot_erase_and_write_keys_cannot_read(server: Server) -> None:
    r = server.http.delete("/v1/profiles/user_id:u-sec", headers=bearer(server.secrets["decide"]))
    assert r.status_code == 403
    r = server.http.get("/v1/profiles/user_id:u-sec", headers=bearer(server.secrets["write"]))
    assert r.status_code == 403
    r = server.http.post(
        "/v1/decide", json={"identifier": "user_id:u-sec"}, headers=bearer(server.secrets["write"])
    )
    assert r.status_code == 403
    # a read-only key reads but does not erase or administer
    reader = bearer(server.secrets["reader"])
    assert server.http.get("/v1/erasures", headers=reader).status_code == 200
    assert server.http.delete("/v1/profiles/user_id:u-sec", headers=reader).status_code == 403
    r = server.http.put("/v1/suppressions/email:a@example.com", json={}, headers=reader)
    assert r.status_code == 403


def test_keys_from_settings_still_work(server: Server) -> None:
    assert server.track("wk_from_settings").status_code == 200


def test_rate_limit_answers_429_with_retry_after(server: Server) -> None:
    answers = [server.track(server.secrets["slow"]) for _ in range(4)]
    statuses = [r.status_code for r in answers]
    assert statuses[:2] == [200, 200], statuses  # the burst
    limited = [r for r in answers if r.status_code == 429]
    assert limited, statuses
    for r in limited:
        assert r.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(r.headers["Retry-After"]) <= 2
    # other keys have their own buckets
    assert server.track(server.secrets["write"]).status_code == 200
    time.sleep(int(limited[-1].headers["Retry-After"]) + 0.1)
    assert server.track(server.secrets["slow"]).status_code == 200


def test_revoked_and_rotated_keys_stop_working_without_a_restart(server: Server) -> None:
    doomed = server.secrets["doomed"]
    assert server.track(doomed).status_code == 200
    server.keys.revoke(server.ids["doomed"])
    deadline = time.monotonic() + 5
    while server.track(doomed).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    r = server.track(doomed)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"

    old = server.secrets["rotated"]
    record, new = server.keys.rotate(server.ids["rotated"], grace=timedelta(hours=1))
    assert record.scopes == ("decide",) and new != old
    body = {
        "identifier": "user_id:u-sec",
        "placement": "home",
        "follow_up": False,
        "candidates": ["p1", "p2"],
    }
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if server.http.post("/v1/decide", json=body, headers=bearer(new)).status_code == 200:
            break
        time.sleep(0.2)
    r = server.http.post("/v1/decide", json=body, headers=bearer(new))
    assert r.status_code == 200, r.text
    # the old secret works during its grace period
    assert server.http.post("/v1/decide", json=body, headers=bearer(old)).status_code == 200
    assert not (server.keys.path.read_text().count(old) or server.keys.path.read_text().count(new))


def test_preflight_from_allowed_origins_and_refused_from_others(server: Server) -> None:
    for origin in (SITE, ALL_SITES):
        r = server.http.options(
            "/v1/t",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert r.status_code == 204, r.text
        assert r.headers["access-control-allow-origin"] == origin
        assert r.headers["access-control-allow-credentials"] == "true"
        assert "POST" in r.headers["access-control-allow-methods"]
        assert "Authorization" in r.headers["access-control-allow-headers"]
    r = server.http.options(
        "/v1/t", headers={"Origin": OTHER_SITE, "Access-Control-Request-Method": "POST"}
    )
    assert r.status_code == 403
    assert "access-control-allow-origin" not in r.headers


def test_origins_are_checked_per_key(server: Server) -> None:
    write = server.secrets["write"]  # allowed from SITE only
    r = server.track(write, Origin=SITE)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == SITE
    r = server.track(write, Origin=ALL_SITES)  # [server] cors_origins: every key
    assert r.status_code == 200
    r = server.track(write, Origin=OTHER_SITE)
    assert r.status_code == 403 and r.json()["error"]["code"] == "origin_not_allowed"
    assert "access-control-allow-origin" not in r.headers
    # a key with no origins of its own: only [server] cors_origins
    other = server.secrets["decide"]
    body = {"identifier": "user_id:u-sec", "follow_up": False}
    r = server.http.post("/v1/decide", json=body, headers={**bearer(other), "Origin": SITE})
    assert r.status_code == 403
    # errors carry the CORS headers too, so the page can read them (a 401, say)
    r = server.track("wk_wrong", Origin=SITE)
    assert r.status_code == 401 and r.headers["access-control-allow-origin"] == SITE
    # the server's own pages (Origin = its own host) are not cross-origin
    r = server.track(write, Origin=server.url)
    assert r.status_code == 200


def test_text_plain_short_endpoints_with_the_key_in_the_body(server: Server) -> None:
    key = server.secrets["write"]
    for short, body in (
        ("t", {"type": "track", "event": "Short", "anonymousId": "a-short"}),
        ("p", {"type": "page", "name": "Home", "anonymousId": "a-short"}),
        ("i", {"type": "identify", "userId": "u-short", "anonymousId": "a-short"}),
        ("g", {"type": "group", "groupId": "g-1", "userId": "u-short"}),
        ("a", {"type": "alias", "previousId": "a-short", "userId": "u-short"}),
        ("s", {"type": "screen", "name": "Main", "userId": "u-short"}),
        ("b", {"batch": [{"type": "track", "event": "B", "userId": "u-short"}]}),
    ):
        import orjson

        r = server.http.post(
            f"/v1/{short}",
            content=orjson.dumps({**body, "writeKey": key}),
            headers={"Content-Type": "text/plain"},
        )
        assert r.status_code == 200 and r.json()["accepted"] == 1, (short, r.text)
    r = server.http.post(
        "/v1/t",
        content=b'{"type": "track", "event": "x", "userId": "u"}',
        headers={"Content-Type": "text/plain"},
    )
    assert r.status_code == 401


def test_request_ids(server: Server) -> None:
    r = server.track(server.secrets["write"], **{"X-Request-Id": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    r = server.http.get("/health", headers={"X-Request-Id": "jane@example.com"})
    assert r.headers["x-request-id"] != "jane@example.com"
    assert len(r.headers["x-request-id"]) == 16
    a = server.http.get("/health").headers["x-request-id"]
    b = server.http.get("/health").headers["x-request-id"]
    assert a != b


def test_body_limit_on_every_route(server: Server) -> None:
    big = b"x" * (600 * 1024)  # over the 500 KB batch limit and its gzip slack
    r = server.http.post("/test/echo", content=big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as read
        for _ in range(10):
            yield b"y" * (100 * 1024)

    r = server.http.post("/test/echo", content=chunks())
    assert r.status_code == 413
    assert server.http.post("/test/echo", content=b"z" * 1000).json() == {"bytes": 1000}
    r = server.http.post("/v1/batch", content=big, headers=basic(server.secrets["write"]))
    assert r.status_code == 413

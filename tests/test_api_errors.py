"""Bad input to the real server (uvicorn on loopback, real Engine, real SQLite file): each is a
clear 4xx in the one error envelope, nothing reaches the online store, and the server keeps
serving. Also pins the envelope for every status the API answers with, FastAPI's own included."""

from __future__ import annotations

import base64
import gzip
import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from segone.api import background_server, create_app
from segone.api.logs import redact_path
from segone.config import Settings
from segone.online.engine import Engine
from segone.online.store import OnlineStore

WRITE_KEY = "wk_errors"
ADMIN = "adm_errors"
DECIDE = "dec_errors"
PII = "alice.pii@example.com"


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def settings_for(root: Path, **server: Any) -> Settings:
    conf = {
        "online_url": f"sqlite:///{root / 'online.db'}",
        "write_keys": [WRITE_KEY],
        "admin_tokens": [ADMIN],
        "decide_tokens": [DECIDE],
        **server,
    }
    return Settings.from_dict(root, {"server": conf})


class Server:
    def __init__(self, url: str, store: OnlineStore) -> None:
        self.url = url
        self.store = store
        self.http = httpx.Client(base_url=url, timeout=10)

    def counts(self) -> dict[str, int]:
        with self.store.read() as tx:
            return {t: tx.count(t) for t in ("events", "identities", "docs", "quarantine")}


@pytest.fixture(scope="module", params=["fast path", "routes"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The server as ``segone serve`` runs it, and (``routes``) without its fast path: the hot
    endpoints then go through their FastAPI routes, which must answer alike."""
    root = tmp_path_factory.mktemp("api_errors")
    settings = settings_for(root)
    store = OnlineStore.open(settings.server.online_url)
    app = create_app(settings, Engine(store, settings))
    if request.param == "routes":
        app.fast = None

    @app.get("/test/int/{n}")  # a typed parameter, to see FastAPI's own 422
    async def typed(n: int) -> dict[str, int]:
        return {"n": n}

    @app.get("/test/boom")  # an unhandled exception whose message holds PII
    async def boom() -> None:
        raise RuntimeError(f"cannot handle {PII}")

    with background_server(app) as url:
        s = Server(url, store)
        yield s
        s.http.close()
    store.close()


def track(user: str = "u1", **extra: Any) -> dict[str, Any]:
    return {"userId": user, "event": "Viewed", "messageId": str(uuid.uuid4()), **extra}


def assert_envelope(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert list(body) == ["error"]
    err = body["error"]
    assert list(err) == ["status", "code", "message", "details"]
    assert err["status"] == status
    assert isinstance(err["code"], str) and err["code"].replace("_", "").isalpha()
    assert err["code"] == err["code"].lower()
    assert isinstance(err["message"], str) and len(err["message"]) > 5
    assert isinstance(err["details"], list)
    for d in err["details"]:
        assert list(d) == ["code", "message", "index", "field"]
    if code is not None:
        assert err["code"] == code
    assert PII not in r.text
    return err


def assert_still_serving(server: Server) -> None:
    msg = track("after-error")
    r = server.http.post("/v1/track", json=msg, headers=basic(WRITE_KEY))
    assert r.status_code == 200, r.text
    assert r.json() == {
        "success": True,
        "accepted": 1,
        "duplicates": 0,
        "rejected": [],
        "dropped": [],
    }
    with server.store.read() as tx:
        assert tx.events.seen([msg["messageId"]]) == {msg["messageId"]}


gz_bomb = gzip.compress(b'{"batch": [' + b" " * (8 * 1024 * 1024) + b"]}")  # ~8 KB -> 8 MB
big_prop = {"blob": "x" * (33 * 1024)}

# (name, path, body bytes, extra headers, status, code, index of the bad message or None)
BAD_INPUT: list[tuple[str, str, bytes, dict[str, str], int, str, int | None]] = [
    ("malformed json", "/v1/track", b'{"userId": "u1", "event": ', {}, 400, "malformed_json", None),
    ("not an object", "/v1/track", b'["track"]', {}, 400, "invalid_message", None),
    ("missing ids", "/v1/track", orjson.dumps({"event": "Viewed"}), {}, 400, "invalid_message", 0),
    (
        "userId wrong type",
        "/v1/identify",
        orjson.dumps({"userId": {"id": 1}}),
        {},
        400,
        "invalid_message",
        0,
    ),
    (
        "traits not an object",
        "/v1/identify",
        orjson.dumps({"userId": "u", "traits": [PII]}),
        {},
        400,
        "invalid_message",
        0,
    ),
    (
        "context.traits not an object",
        "/v1/identify",
        orjson.dumps({"userId": "u", "context": {"traits": PII}}),
        {},
        400,
        "invalid_message",
        0,
    ),
    (
        "nested deeper than JSON can be written back",  # orjson reads 1,024 levels, writes 255
        "/v1/track",
        b'{"userId": "u1", "event": "Viewed", "properties": {"a": '
        + b"[" * 300
        + b"]" * 300
        + b"}}",
        {},
        400,
        "invalid_message",
        0,
    ),
    (
        "track without event",
        "/v1/track",
        orjson.dumps({"userId": "u1", "event": ""}),
        {},
        400,
        "invalid_message",
        0,
    ),
    (
        "bad timestamp",
        "/v1/track",
        orjson.dumps(track(timestamp="yesterday")),
        {},
        400,
        "invalid_message",
        0,
    ),
    (
        "type mismatch",
        "/v1/track",
        orjson.dumps({**track(), "type": "identify"}),
        {},
        400,
        "invalid_message",
        0,
    ),
    (
        "alias without previousId",
        "/v1/alias",
        orjson.dumps({"userId": "u1"}),
        {},
        400,
        "invalid_message",
        0,
    ),
    (
        "group without groupId",
        "/v1/group",
        orjson.dumps({"userId": "u1"}),
        {},
        400,
        "invalid_message",
        0,
    ),
    (
        "oversize message",
        "/v1/track",
        orjson.dumps(track(properties=big_prop)),
        {},
        400,
        "invalid_message",
        0,
    ),
    (
        "batch not a list",
        "/v1/batch",
        orjson.dumps({"batch": {"a": 1}}),
        {},
        400,
        "invalid_batch",
        None,
    ),
    ("empty batch", "/v1/batch", orjson.dumps({"batch": []}), {}, 400, "empty_batch", None),
    (
        "batch with nothing valid",
        "/v1/batch",
        orjson.dumps(
            {"batch": [{"type": "track", "userId": "u"}, {"type": "nope", "userId": "u"}]}
        ),
        {},
        400,
        "invalid_batch",
        1,
    ),
    (
        "oversize batch",
        "/v1/batch",
        orjson.dumps({"batch": [track(properties={"b": "y" * 30000}) for _ in range(20)]}),
        {},
        413,
        "payload_too_large",
        None,
    ),
    (
        "bad gzip",
        "/v1/batch",
        b"\x1f\x8b\x08\x00not really gzip",
        {"Content-Encoding": "gzip"},
        400,
        "invalid_encoding",
        None,
    ),
    (
        "truncated gzip",
        "/v1/batch",
        gzip.compress(orjson.dumps({"batch": [track()]}))[:-12],
        {"Content-Encoding": "gzip"},
        400,
        "invalid_encoding",
        None,
    ),
    (
        "gzip bomb",
        "/v1/batch",
        gz_bomb,
        {"Content-Encoding": "gzip"},
        413,
        "payload_too_large",
        None,
    ),
    (
        "unknown encoding",
        "/v1/track",
        orjson.dumps(track()),
        {"Content-Encoding": "br"},
        415,
        "unsupported_content_encoding",
        None,
    ),
]


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "code", "index"),
    [case[1:] for case in BAD_INPUT],
    ids=[case[0] for case in BAD_INPUT],
)
def test_bad_input_is_a_clear_4xx_and_stores_nothing(
    server: Server,
    path: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
    code: str,
    index: int | None,
) -> None:
    before = server.counts()
    r = server.http.post(path, content=body, headers={**basic(WRITE_KEY), **headers})
    err = assert_envelope(r, status, code)
    if index is not None:
        assert any(d["index"] == index for d in err["details"]), err
        assert f"message {index}" in err["details"][-1]["message"]
    assert server.counts() == before
    assert_still_serving(server)


def test_batch_keeps_valid_messages_and_quarantines_the_rest(server: Server) -> None:
    good = [{**track("b1"), "type": "track"}, {**track("b2"), "type": "track"}]
    bad = [{"type": "track", "userId": "b3"}, {"type": "identify", "traits": {"email": PII}}]
    before = server.counts()
    r = server.http.post(
        "/v1/batch", json={"batch": [good[0], bad[0], good[1], bad[1]]}, headers=basic(WRITE_KEY)
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["accepted"], out["duplicates"]) == (2, 0)
    assert [(x["index"], x["code"], x["field"]) for x in out["rejected"]] == [
        (1, "missing_field", "event"),
        (3, "missing_field", "userId"),
    ]
    assert PII not in r.text
    after = server.counts()
    assert after["events"] == before["events"] + 2
    assert after["quarantine"] == before["quarantine"] + 2
    with server.store.read() as tx:
        rows = tx.quarantine.recent(2)
    assert sorted(row.reason.split(":")[0] for row in rows) == ["missing_field"] * 2


AUTH_CASES: list[tuple[str, str, str, dict[str, str], int]] = [
    ("no key", "POST", "/v1/track", {}, 401),
    ("wrong write key", "POST", "/v1/track", basic("wk_wrong"), 401),
    ("admin token is not a write key", "POST", "/v1/track", basic(ADMIN), 401),
    ("bearer on ingest", "POST", "/v1/track", bearer(WRITE_KEY), 401),
    ("malformed basic", "POST", "/v1/track", {"Authorization": "Basic %%%"}, 401),
    ("profiles without token", "GET", "/v1/profiles/user_id:u1", {}, 401),
    ("profiles with wrong token", "GET", "/v1/profiles/user_id:u1", bearer("nope"), 401),
    ("profiles with write key", "GET", "/v1/profiles/user_id:u1", bearer(WRITE_KEY), 403),
    ("profiles with basic write key", "GET", "/v1/profiles/user_id:u1", basic(WRITE_KEY), 401),
    ("profiles with decide token", "GET", "/v1/profiles/user_id:u1", bearer(DECIDE), 403),
    ("erase with decide token", "DELETE", "/v1/profiles/user_id:u1", bearer(DECIDE), 403),
    ("decide without token", "POST", "/v1/decide", {}, 401),
    ("decide with write key", "POST", "/v1/decide", bearer(WRITE_KEY), 403),
    ("feedback with write key", "POST", "/v1/feedback", bearer(WRITE_KEY), 403),
]


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [c[1:] for c in AUTH_CASES],
    ids=[c[0] for c in AUTH_CASES],
)
def test_wrong_or_missing_credentials(
    server: Server, method: str, path: str, headers: dict[str, str], status: int
) -> None:
    before = server.counts()
    body = orjson.dumps(
        track()
        if path == "/v1/track"
        else {"identifier": "user_id:u1", "decision_id": "d", "kind": "click"}
    )
    r = server.http.request(method, path, content=body, headers=headers)
    assert_envelope(r, status, "unauthorized" if status == 401 else "forbidden")
    if status == 401:
        scheme = "Basic" if path == "/v1/track" else "Bearer"
        assert r.headers["www-authenticate"].startswith(scheme)
    assert server.counts() == before
    assert_still_serving(server)


def test_write_key_in_body_and_unreadable_body_without_key(server: Server) -> None:
    r = server.http.post("/v1/track", json={**track("wk-body"), "writeKey": WRITE_KEY})
    assert r.status_code == 200, r.text
    r = server.http.post("/v1/track", json={**track("wk-body"), "writeKey": "wk_wrong"})
    assert_envelope(r, 401, "unauthorized")
    # unauthenticated and unreadable: a 401, not a parse error (nothing is told to strangers)
    r = server.http.post("/v1/track", content=b"{not json")
    assert_envelope(r, 401, "unauthorized")
    # authenticated by the body, then invalid: the 400 says why
    r = server.http.post("/v1/batch", json={"batch": [], "writeKey": WRITE_KEY})
    assert_envelope(r, 400, "empty_batch")


def test_envelope_for_every_status(server: Server) -> None:
    h = server.http
    assert_envelope(h.get("/v1/nowhere"), 404, "not_found")
    assert_envelope(h.get("/v1/track"), 405, "method_not_allowed")
    err = assert_envelope(h.get("/test/int/abc"), 422, "validation_error")
    assert err["details"][0]["field"] == "n"
    assert_envelope(h.get("/test/boom"), 500, "internal_error")
    assert_envelope(h.get(f"/v1/profiles/email:{PII}", headers=bearer(ADMIN)), 404)
    assert_envelope(h.post("/v1/decide", json={"placement": "home"}, headers=bearer(DECIDE)), 400)
    assert_envelope(h.post("/v1/decide", content=b"[1]", headers=bearer(DECIDE)), 400)
    assert_envelope(h.post("/v1/decide", content=b"{" * 70_000, headers=bearer(DECIDE)), 413)
    r = h.post(
        "/v1/feedback",
        json={"decision_id": "no-such-decision", "kind": "click"},
        headers=bearer(DECIDE),
    )
    assert_envelope(r, 404, "not_found")
    assert_still_serving(server)


def test_unhandled_error_logs_no_pii(server: Server, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="segone"):
        server.http.get("/test/boom")
        server.http.get(f"/v1/profiles/email:{PII}?email={PII}", headers=bearer(ADMIN))
        deadline = time.monotonic() + 5  # the access line is written once the answer is sent
        while "/v1/profiles/" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.01)
    assert "RuntimeError" in caplog.text
    assert PII not in caplog.text and "alice" not in caplog.text
    assert "GET /v1/profiles/{identifier}?{query} 404" in caplog.text


def test_redact_path() -> None:
    assert redact_path("/v1/track") == "/v1/track"
    assert redact_path("/v1/profiles/email:a@b.c") == "/v1/profiles/{identifier}"
    assert redact_path("/v1/track", b"user=a@b.c") == "/v1/track?{query}"
    assert redact_path("/anything/a@b.c") == "{other}"


def test_openapi_documents_requests_responses_and_errors(server: Server) -> None:
    doc = server.http.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    assert set(doc["components"]["securitySchemes"]) == {"writeKey", "decideToken", "adminToken"}
    for path in [f"/v1/{t}" for t in ("identify", "track", "page", "screen", "group", "alias")] + [
        "/v1/batch",
        "/v1/decide",
        "/v1/feedback",
    ]:
        op = doc["paths"][path]["post"]
        ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        model = schemas[ref.rsplit("/", 1)[1]]
        assert "example" in model or "properties" in model
        assert op["security"]
        assert op["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].endswith(
            "/ErrorEnvelope"
        )
    assert "example" in schemas["TrackMessage"] and "example" in schemas["IngestResponse"]
    assert set(doc["paths"]["/v1/profiles/{identifier}"]) == {"get", "delete"}
    assert server.http.get("/docs").status_code == 200
    assert server.http.get("/health").json()["status"] == "ok"

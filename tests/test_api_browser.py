"""Browser tracking end to end: Segment's own analytics.js (``@segment/analytics-next``, vendored
in tests/fixtures/analytics-next) in Chromium, on a page served from another origin than the
API, sends page, identify and track to ``segone serve``; they reach the online store and the
person's profile. CORS is exercised for real (the page and the API are different origins), every
host but the two local servers is blocked and none may even be asked for, and a page of an
origin no key allows cannot send anything.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from segone.api import background_server, create_app
from segone.api.keys import KeyFile
from segone.config import Settings
from segone.online.engine import Engine
from segone.online.store import OnlineStore

playwright_sync = pytest.importorskip("playwright.sync_api")

FIXTURES = Path(__file__).parent / "fixtures" / "analytics-next"
BUNDLE_SHA256 = "e0bed4badf9ec12029a63ef13f22acb9d26d7c7b38d721da8e4e552e7bd33088"
CHROMIUM = "/usr/bin/chromium"
ADMIN = "adm_browser"


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    """The website: the test page and analytics.js, on an origin of its own."""
    handler = functools.partial(QuietHandler, directory=str(FIXTURES))
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@dataclass
class Api:
    url: str
    write_key: str
    store: OnlineStore

    @property
    def host(self) -> str:
        return urlsplit(self.url).netloc

    def events(self) -> list[dict[str, Any]]:
        with self.store.read() as tx:
            return [m for _, _, m in tx.events.after(0, 10_000)]

    def profile(self, identifier: str) -> httpx.Response:
        return httpx.get(
            f"{self.url}/v1/profiles/{identifier}",
            headers={"Authorization": f"Bearer {ADMIN}"},
            timeout=10,
        )


@pytest.fixture(scope="module")
def api(site: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """``segone serve`` with a write key made by ``segone keys create --origin <site>``."""
    root = tmp_path_factory.mktemp("browser")
    _, write_key = KeyFile(root / "keys.json").create("write", name="site", origins=[site])
    settings = Settings.from_dict(
        root,
        {
            "server": {
                "online_url": f"sqlite:///{root / 'online.db'}",
                "admin_tokens": [ADMIN],
                "writer": "thread",
            }
        },
    )
    store = OnlineStore.open(settings.server.online_url)
    app = create_app(settings, Engine(store, settings))
    with background_server(app) as url:
        yield Api(url, write_key, store)
    store.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed")
    with playwright_sync.sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield b
        b.close()


class Guard:
    """Every request the page makes, and those that went elsewhere than the two servers
    (aborted)."""

    def __init__(self, allowed: set[str]) -> None:
        self.allowed = allowed
        self.seen: list[str] = []
        self.blocked: list[str] = []

    def __call__(self, route: Any) -> None:
        url = route.request.url
        self.seen.append(f"{route.request.method} {url}")
        if urlsplit(url).netloc in self.allowed:
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort()


def test_the_vendored_bundle_is_the_recorded_release() -> None:
    data = (FIXTURES / "analytics-next.umd.js").read_bytes()
    assert hashlib.sha256(data).hexdigest() == BUNDLE_SHA256
    assert "1.84.3" in (FIXTURES / "README.md").read_text()


@pytest.mark.slow
def test_analytics_js_page_identify_track_reach_the_store(
    browser: Any, site: str, api: Api
) -> None:
    context = browser.new_context()
    guard = Guard({urlsplit(site).netloc, api.host})
    context.route("**/*", guard)
    page = context.new_page()
    answers: list[tuple[str, int, str | None]] = []
    page.on(
        "response",
        lambda r: answers.append((r.url, r.status, r.headers.get("access-control-allow-origin"))),
    )
    page.goto(f"{site}/page.html?wk={api.write_key}&api={api.host}")
    anonymous_id = page.evaluate(
        """async () => {
            const [analytics] = await window.ajs;
            await analytics.page("Shop", "Home", {path: "/home"});
            await analytics.identify("u-browser-1", {email: "jane.browser@example.com"});
            await analytics.track("Product Viewed", {product_id: "p-42", price: 12.5});
            return analytics.user().anonymousId();
        }"""
    )
    assert isinstance(anonymous_id, str) and anonymous_id

    stored = api.events()
    mine = [m for m in stored if m.get("anonymousId") == anonymous_id]
    assert sorted(m["type"] for m in mine) == ["identify", "page", "track"]
    track = next(m for m in mine if m["type"] == "track")
    assert track["event"] == "Product Viewed" and track["properties"]["product_id"] == "p-42"
    assert track["userId"] == "u-browser-1"  # analytics.js remembers the identified user
    assert all("writeKey" not in m for m in mine)  # the credential is never stored

    r = api.profile("user_id:u-browser-1")
    assert r.status_code == 200, r.text
    assert f"anonymous_id:{anonymous_id}" in r.json()["identifiers"]

    # analytics.js posted to the short endpoints, through CORS: each answer names the page's
    # origin (never *) so the SDK could read it
    posts = [(u, s, o) for u, s, o in answers if u.startswith(api.url)]
    assert {urlsplit(u).path for u, _, _ in posts} >= {"/v1/p", "/v1/i", "/v1/t"}
    assert all(s == 200 and o == site for _, s, o in posts), posts
    # nothing was asked of any other host (segment.com's CDN or API, metrics)
    assert guard.blocked == [], guard.blocked
    context.close()


def test_a_cookie_anonymous_id_and_a_body_write_key_with_text_plain(
    browser: Any, site: str, api: Api
) -> None:
    """A hand-written ``fetch`` as simple as CORS allows (``text/plain``, the write key in the
    body, no Authorization, so no preflight) with the page's cookies: a message with no ids
    takes the anonymous id of analytics.js's ``ajs_anonymous_id`` cookie."""
    context = browser.new_context()
    guard = Guard({urlsplit(site).netloc, api.host})
    context.route("**/*", guard)
    page = context.new_page()
    page.goto(f"{site}/page.html?wk={api.write_key}&api={api.host}")
    result = page.evaluate(
        """async ([url, writeKey]) => {
            const [analytics] = await window.ajs;
            const anonymousId = analytics.user().anonymousId();
            const r = await fetch(url + "/v1/t", {
                method: "POST", credentials: "include",
                headers: {"Content-Type": "text/plain"},
                body: JSON.stringify({writeKey, type: "track", event: "Cookie Only"}),
            });
            return {anonymousId, cookie: document.cookie, status: r.status, body: await r.json()};
        }""",
        [api.url, api.write_key],
    )
    assert "ajs_anonymous_id" in result["cookie"]
    assert result["status"] == 200 and result["body"]["accepted"] == 1, result
    cookie_only = [m for m in api.events() if m.get("event") == "Cookie Only"]
    assert [m["anonymousId"] for m in cookie_only] == [result["anonymousId"]]
    assert guard.blocked == []
    context.close()


def test_a_page_of_an_origin_no_key_allows_sends_nothing(browser: Any, site: str, api: Api) -> None:
    """The same page under another origin (``localhost`` instead of ``127.0.0.1``): the
    preflight is refused, the browser sends nothing, the store is unchanged."""
    other = site.replace("127.0.0.1", "localhost")
    context = browser.new_context()
    guard = Guard({urlsplit(other).netloc, api.host})
    context.route("**/*", guard)
    page = context.new_page()
    page.goto(f"{other}/page.html?wk={api.write_key}&api={api.host}")
    before = len(api.events())
    outcome = page.evaluate(
        """async ([url, writeKey]) => {
            try {
                await fetch(url + "/v1/t", {
                    method: "POST",
                    headers: {"Content-Type": "text/plain",
                              "Authorization": "Basic " + btoa(writeKey + ":")},
                    body: JSON.stringify({type: "track", event: "Foreign", anonymousId: "a-x"}),
                });
                return "sent";
            } catch (e) {
                return "blocked";
            }
        }""",
        [api.url, api.write_key],
    )
    assert outcome == "blocked"
    assert len(api.events()) == before
    assert not [m for m in api.events() if m.get("event") == "Foreign"]
    context.close()

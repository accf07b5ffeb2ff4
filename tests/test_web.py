"""The web dashboard, end to end: a real ``segone serve`` on a small demo project, driven by
Debian's Chromium through Playwright (plain fixtures, no downloaded browser), plus the parts
that need no browser (vendored assets, passwords, signed sessions, CSRF, empty states)."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from segone.web import STATIC_DIR
from segone.web.security import Signer, check_password, hash_password
from tests.web_support import (
    ADMIN,
    CHARTS_DRAWN,
    CHROMIUM,
    DECIDE,
    PAGES,
    ROOT,
    WRITE,
    login,
    make_project,
    serve,
)


# -- without a browser ----------------------------------------------------------------------------
def test_vendored_assets_match_their_recorded_checksums() -> None:
    lines = [
        line.split()
        for line in (STATIC_DIR / "vendor" / "CHECKSUMS").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert {row[1] for row in lines} == {"htmx.org", "echarts"}
    for file, _package, version, tarball_sha, file_sha in lines:
        path = STATIC_DIR / "vendor" / file
        assert version in file
        assert len(tarball_sha) == 64
        assert hashlib.sha256(path.read_bytes()).hexdigest() == file_sha, file
    # every vendored script is recorded (nothing slipped in unchecked)
    recorded = {row[0] for row in lines}
    assert {p.name for p in (STATIC_DIR / "vendor").glob("*.js")} == recorded


def test_passwords_are_salted_scrypt_hashes() -> None:
    a, b = hash_password("correct horse battery"), hash_password("correct horse battery")
    assert a.startswith("scrypt$") and a != b  # salted
    assert check_password("correct horse battery", a)
    assert not check_password("correct horse batterY", a)
    assert not check_password("x", "not a hash")


def test_session_cookies_cannot_be_forged_or_reused_after_expiry() -> None:
    signer = Signer(b"k" * 32)
    cookie = signer.issue("alice", now=1000.0)
    s = signer.read(cookie, now=1001.0)
    assert s is not None and s.user == "alice"
    _user, expires, nonce, mac = cookie.split("|")
    assert signer.read(f"YWRtaW4|{expires}|{nonce}|{mac}", now=1001.0) is None  # user swapped
    assert signer.read(cookie, now=1000.0 + 13 * 3600) is None  # expired
    assert Signer(b"j" * 32).read(cookie, now=1001.0) is None  # another secret
    assert signer.check_csrf(s, signer.csrf(s))
    assert not signer.check_csrf(s, None)
    other = signer.read(signer.issue("alice", now=1000.0), now=1001.0)
    assert other is not None and not signer.check_csrf(other, signer.csrf(s))


def test_a_project_without_a_build_says_what_to_run(tmp_path: Path) -> None:
    from segone.api.app import create_app
    from segone.api.server import background_server
    from segone.online.engine import Engine
    from segone.online.store import OnlineStore
    from segone.project import Project
    from segone.web import extend_api

    root = tmp_path / "fresh"
    Project.init(root)
    cfg = root / "segone.toml"
    cfg.write_text(
        re.sub(r"^admin_tokens = \[\]", f'admin_tokens = ["{ADMIN}"]', cfg.read_text(), flags=re.M)
    )
    settings = Project.open(root).settings
    with (
        OnlineStore.open(settings.server.online_url, root=root) as store,
        background_server(create_app(settings, Engine(store, settings), extend=extend_api)) as url,
        httpx.Client(base_url=url, follow_redirects=True) as client,
    ):
        page = client.get("/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf
        r = client.post("/login", data={"csrf": csrf.group(1), "token": ADMIN, "next": "/"})
        assert r.status_code == 200 and "No build yet" in r.text
        assert "segone build" in r.text and "Traceback" not in r.text
        for path in ("/segments", "/predictions", "/identity", "/lifecycle", "/customers"):
            r = client.get(path)
            assert r.status_code == 200, path
            assert "segone build" in r.text, path
        assert client.get("/live").status_code == 200


def test_segone_ui_starts_the_server_once_and_prints_the_url(tmp_path: Path) -> None:
    from tests.web_support import free_port

    root = tmp_path / "p"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    cli = [sys.executable, "-m", "segone.cli"]
    subprocess.run([*cli, "init", str(root)], check=True, env=env, capture_output=True)
    port = str(free_port())
    ui = [*cli, "ui", "-p", str(root), "--port", port, "--no-browser"]
    first = subprocess.run([*ui, "--detach"], env=env, capture_output=True, text=True, timeout=180)
    pid = re.search(r"kill (\d+)", first.stdout)
    try:
        assert first.returncode == 0, first.stderr
        assert f"dashboard: http://127.0.0.1:{port}/" in first.stdout
        assert "starting segone serve" in first.stderr and pid
        r = httpx.get(f"http://127.0.0.1:{port}/", follow_redirects=True)
        assert r.status_code == 200 and 'id="token"' in r.text  # the login page
        again = subprocess.run(ui, env=env, capture_output=True, text=True, timeout=60)
        assert again.returncode == 0 and "starting" not in again.stderr  # found it running
        assert f"http://127.0.0.1:{port}/" in again.stdout
    finally:
        if pid:
            os.kill(int(pid.group(1)), 15)


# -- a real server and a real browser -------------------------------------------------------------
# building the project and starting the server are part of the first test's time
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo project of 1,000 customers (SEGONE_WEB_PROJECT reuses one made by
    ``tests.web_support.make_project``, to iterate on the pages quickly)."""
    reuse = os.environ.get("SEGONE_WEB_PROJECT")
    if reuse:
        return Path(reuse)
    root = tmp_path_factory.mktemp("web") / "demo"
    make_project(root, customers=1000, seed=7)
    return root


@pytest.fixture(scope="module")
def server(project: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve(project, tmp_path_factory.mktemp("log") / "serve.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            headless=True,
        )
        yield b
        b.close()


class Watch:
    """Console errors, failed requests and error responses seen by a page."""

    def __init__(self, page: Any) -> None:
        self.problems: list[str] = []
        page.on(
            "console",
            lambda m: (
                self.problems.append(f"console {m.type}: {m.text}")
                if m.type in ("error", "warning")
                else None
            ),
        )
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: self.problems.append(f"failed: {r.url}"))
        page.on(
            "response",
            lambda r: self.problems.append(f"{r.status}: {r.url}") if r.status >= 400 else None,
        )


@pytest.fixture(scope="module")
def admin(browser: Any, server: str) -> Iterator[Any]:
    """A browser context logged in with the admin token."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    login(page, server)
    assert page.url.rstrip("/") == server
    page.close()
    yield ctx
    ctx.close()


def _open(ctx: Any, url: str) -> tuple[Any, Watch]:
    page = ctx.new_page()
    page.set_default_timeout(60_000)  # HTMX swaps on a loaded 2-core machine
    watch = Watch(page)
    page.goto(url)
    page.wait_for_load_state("networkidle")
    return page, watch


def _charts_drawn(page: Any) -> list[bool]:
    n = page.locator("[data-chart]").count()
    if n:
        page.wait_for_function(
            f"document.querySelectorAll('[data-drawn]').length >= {n}", timeout=10_000
        )
        page.wait_for_timeout(300)  # the first frame of ECharts' animation
    return list(page.evaluate(CHARTS_DRAWN))


@pytest.mark.parametrize(("name", "path"), PAGES, ids=[p[0] for p in PAGES])
def test_each_page_renders_with_its_charts_and_no_errors(
    admin: Any, server: str, name: str, path: str
) -> None:
    page, watch = _open(admin, server + path)
    try:
        assert page.locator("main h1").count() == 1
        assert "Traceback" not in page.content()
        drawn = _charts_drawn(page)
        expected_charts = {
            "overview": 1,
            "segments": 1,
            "lifecycle": 1,
            "predictions": 3,
            "campaigns": 1,
            "identity": 1,
            "live": 1,
        }
        assert len(drawn) >= expected_charts.get(name, 0), drawn
        assert all(drawn), f"blank chart on {name}: {drawn}"
        assert watch.problems == [], watch.problems
    finally:
        page.close()


def test_security_headers_and_cookie_flags(server: str) -> None:
    with httpx.Client(base_url=server) as http:
        r = http.get("/login")
        csp = r.headers["content-security-policy"]
        script_src = re.search(r"script-src ([^;]*)", csp)
        assert script_src and "unsafe-inline" not in script_src.group(1)
        assert "unsafe-eval" not in csp and "frame-ancestors 'none'" in csp
        assert r.headers["x-frame-options"] == "DENY"
        assert "<script>" not in r.text  # no inline script anywhere
        csrf = re.search(r'name="csrf" value="([^"]+)"', r.text)
        assert csrf
        r = http.post("/login", data={"csrf": csrf.group(1), "token": ADMIN, "next": "/"})
        assert r.status_code == 303
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and ADMIN not in cookie


def test_a_logged_out_visit_is_sent_to_the_login_page_and_back(browser: Any, server: str) -> None:
    ctx = browser.new_context()
    try:
        page = ctx.new_page()
        page.goto(f"{server}/predictions")
        assert "/login?next=%2Fpredictions" in page.url
        page.fill("#token", ADMIN)
        page.click("button[type=submit]")
        page.wait_for_url(f"{server}/predictions")
        assert page.locator("h1").inner_text() == "Predictions"
    finally:
        ctx.close()


@pytest.mark.parametrize("token", [WRITE, DECIDE, "not-a-token"], ids=["write", "decide", "bad"])
def test_write_keys_and_decide_tokens_cannot_log_in(browser: Any, server: str, token: str) -> None:
    ctx = browser.new_context()
    try:
        page = ctx.new_page()
        login(page, server, token=token)
        assert "/login" in page.url
        assert page.locator(".alert").count() == 1
        page.goto(f"{server}/")
        assert "/login" in page.url  # still not logged in
        assert not [c for c in ctx.cookies() if c["name"] == "segone_session"]
    finally:
        ctx.close()


def test_a_user_logs_in_with_a_password_and_out(browser: Any, server: str) -> None:
    ctx = browser.new_context()
    try:
        page = ctx.new_page()
        login(page, server, token=None)
        assert page.locator(".who").inner_text() == "marketer"
        page.click("header .logout button")
        page.wait_for_url(re.compile(r".*/login.*"))
        page.goto(f"{server}/identity")
        assert "/login" in page.url
    finally:
        ctx.close()


def test_posts_without_the_csrf_token_are_refused(admin: Any, server: str) -> None:
    cookies = {c["name"]: c["value"] for c in admin.cookies()}
    with httpx.Client(base_url=server, cookies=cookies) as http:
        assert http.get("/segments/new").status_code == 200  # the session works
        form = {"name": "x", "attribute_0": "orders", "op_0": "gte", "value_0": "1"}
        assert http.post("/segments/new/preview", data=form).status_code == 403
        bad = {**form, "csrf": "forged"}
        assert http.post("/segments/new/save", data=bad).status_code == 403
        assert http.post("/logout").status_code == 403
        # and the login form itself
        assert http.post("/login", data={"token": ADMIN}).status_code == 403


def test_keyboard_reaches_the_navigation_and_the_search_form(admin: Any, server: str) -> None:
    page, _ = _open(admin, f"{server}/customers")
    try:
        seen = []
        for _ in range(14):
            page.keyboard.press("Tab")
            seen.append(
                page.evaluate(
                    "() => { const e = document.activeElement;"
                    " return e.id || e.getAttribute('href') || e.tagName; }"
                )
            )
        assert seen[0] == "#main"  # the skip link comes first
        for href in ("/", "/customers", "/segments", "/lifecycle", "/live"):
            assert href in seen, seen
        assert "q" in seen, seen
        page.focus("#q")
        page.keyboard.type("a")
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(r".*/customers\?q=a"))
        assert page.locator("table.results tbody tr").count() > 0
    finally:
        page.close()


def test_search_then_the_customer_360(admin: Any, server: str, project: Path) -> None:
    import duckdb

    con = duckdb.connect(str(project / "warehouse.duckdb"), read_only=True)
    try:
        email, cid = con.execute(
            "SELECT split_part(m.node, ':', 2), m.customer_id FROM customer_map m "
            "JOIN profiles p USING (customer_id) WHERE m.id_type = 'email' AND p.orders > 1 "
            "ORDER BY m.customer_id LIMIT 1"
        ).fetchone()
    finally:
        con.close()
    page, watch = _open(admin, f"{server}/customers")
    try:
        page.fill("#q", email.upper())  # any spelling of an identifier finds its person
        page.wait_for_selector(f"#results a[href='/customers/{cid}']", timeout=10_000)
        page.click(f"#results a[href='/customers/{cid}']")
        page.wait_for_url(f"{server}/customers/{cid}")
        page.wait_for_load_state("networkidle")
        text = page.locator("main").inner_text()
        for section in (
            "Identities",
            "Predictions",
            "Consent and channel",
            "Segments over time",
            "Taste",
            "Timeline",
            "Moves",
            "Live (the running server)",
        ):
            assert section in text, section
        assert email in text
        assert "Stage now" in text  # the online store knows them (the build published them)
        assert all(_charts_drawn(page))
        assert watch.problems == [], watch.problems
    finally:
        page.close()


def test_missing_things_are_error_pages_not_tracebacks(admin: Any, server: str) -> None:
    cookies = {c["name"]: c["value"] for c in admin.cookies()}
    with httpx.Client(base_url=server, cookies=cookies) as http:
        r = http.get("/customers/cus_nobody")
        assert r.status_code == 404 and "No such customer" in r.text
        r = http.get("/segments/no_such_segment")
        assert r.status_code == 404 and "No such segment" in r.text
        r = http.get("/lifecycle", params={"from": "yesterday"})
        assert r.status_code == 400 and "not a date" in r.text
        for r in (http.get("/customers/cus_nobody"), http.get("/lifecycle?from=x")):
            assert "Traceback" not in r.text and 'File "' not in r.text


def test_the_rule_builder_writes_yaml_that_segone_counts_the_same(
    admin: Any, server: str, project: Path
) -> None:
    page, watch = _open(admin, f"{server}/segments/new")
    try:
        page.fill("#seg-name", "built_in_browser")
        page.select_option("#attribute_0", "orders")
        page.select_option("#op_0", "gte")
        page.fill("#value_0", "2")
        page.wait_for_load_state("networkidle")
        page.click("#add-condition")
        page.wait_for_selector("#attribute_1")
        page.select_option("#attribute_1", "revenue")
        page.select_option("#op_1", "gt")
        page.fill("#value_1", "150")
        page.keyboard.press("Tab")  # leave the field: its change is previewed now, not at save
        page.wait_for_function(
            "() => (document.querySelector('#preview-yaml') || {}).textContent"
            " && document.querySelector('#preview-yaml').textContent.includes('150')",
            timeout=10_000,
        )
        first = int(page.locator("#preview-count").get_attribute("data-count"))
        yaml_text = page.locator("#preview-yaml").inner_text()
        page.wait_for_load_state("networkidle")
        assert "orders:" in yaml_text and "gte: 2" in yaml_text and "gt: 150" in yaml_text
        page.click("#save-segment")
        page.wait_for_selector("#saved", timeout=30_000)
        page.wait_for_load_state("networkidle")
        # saving again, or previewing after saving, finds the saved file replaced, not doubled
        page.fill("#seg-desc", "orders and revenue")
        page.keyboard.press("Tab")
        page.wait_for_selector("#saved", state="detached", timeout=30_000)
        page.click("#save-segment")
        page.wait_for_selector("#saved", timeout=30_000)
        previewed = int(page.locator("#preview-count").get_attribute("data-count"))
        assert previewed == first
        assert watch.problems == [], watch.problems
    finally:
        page.close()
    saved = project / "segments" / "built_in_browser.yaml"
    assert saved.exists()
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from segone.cli import main; main()",
            "segments",
            "preview",
            str(saved),
            "-p",
            str(project),
        ],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "COLUMNS": "200", "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    row = next(line for line in out.stdout.splitlines() if "built_in_browser" in line)
    counted = int(re.findall(r"[\d,]+", row.split("built_in_browser", 1)[1])[0].replace(",", ""))
    assert counted == previewed
    assert 0 < previewed < 2000


def test_live_page_counts_events_sent_to_the_server(admin: Any, server: str) -> None:
    batch = {
        "batch": [
            {
                "type": "track",
                "userId": f"live-{i}",
                "event": "Product Viewed",
                "messageId": f"web-live-{i}-{time.time_ns()}",
            }
            for i in range(30)
        ]
    }
    r = httpx.post(f"{server}/v1/batch", json=batch, auth=(WRITE, ""), timeout=30)
    assert r.status_code == 200, r.text
    page, watch = _open(admin, f"{server}/live")
    try:
        eps = float(page.locator("#eps").inner_text())
        assert eps >= 30 / 60 - 1e-9
        assert all(_charts_drawn(page))
        assert watch.problems == [], watch.problems
    finally:
        page.close()


def test_the_dashboard_never_holds_the_warehouse_a_build_needs(
    admin: Any, server: str, project: Path
) -> None:
    from segone.store.duckdb import DuckDBWarehouse

    cookies = {c["name"]: c["value"] for c in admin.cookies()}
    with httpx.Client(base_url=server, cookies=cookies, timeout=120) as http:
        assert http.get("/identity").status_code == 200
        # what `segone build` does first: open the warehouse for writing (fails if locked)
        wh = DuckDBWarehouse(project / "warehouse.duckdb")
        try:
            wh._raw("CREATE TABLE web_probe AS SELECT 1 AS x")
            wh.checkpoint()
            r = http.get("/identity")  # the build holds the file: the last copy answers
            assert r.status_code == 200 and "previous build" in r.text
        finally:
            wh._raw("DROP TABLE web_probe")
            wh.close()
        r = http.get("/identity")  # the build is over: a fresh copy, no banner
        assert r.status_code == 200 and "previous build" not in r.text


def test_the_fast_search_finds_exactly_whom_the_library_finds(project: Path) -> None:
    from segone.profiles.lookup import find_customers
    from segone.store.duckdb import DuckDBWarehouse
    from segone.web.data import find_ids, search
    from segone.web.fast import NodeIndex

    wh = DuckDBWarehouse(project / "warehouse.duckdb", read_only=True)
    try:
        con = wh.backend.con
        queries = ["nobody@example.org", "cus_nobody", "email:", "  ", "smith"]
        for id_type in ("email", "phone", "handle", "user_id", "source_id", "loyalty_id"):
            for node, cid in con.execute(
                "SELECT node, customer_id FROM customer_map WHERE id_type = $1 "
                "ORDER BY hash(node) LIMIT 2",
                [id_type],
            ).fetchall():
                value = node.split(":", 1)[1]
                queries += [value, value.upper(), f" {value} ", node, cid]
                if id_type == "phone":
                    queries.append(f"+{value.lstrip('+')[:1]} {value.lstrip('+')[1:]}")
        index = NodeIndex.build(con)
        for q in queries:
            assert find_ids(wh, q.strip(), "1") == find_customers(wh, q.strip(), "1"), q
            assert find_ids(wh, q.strip(), "1", index) == find_customers(wh, q.strip(), "1"), q
        hits = search(wh, queries[-1], "1")
        assert hits and all("customer_id" in h for h in hits)
    finally:
        wh.close()


def test_the_fast_paths_answer_as_the_plain_queries(project: Path, tmp_path: Path) -> None:
    """The customer 360 with compiled-once SQL equals the one through Ibis, and the name index
    finds whom the SQL name search finds, in the same order."""
    from segone.store.snapshot import WarehouseSnapshot
    from segone.web.data import customer, search
    from segone.web.fast import NameIndex, NodeIndex

    snap = WarehouseSnapshot(project / "warehouse.duckdb", tmp_path)
    with snap.read() as wh:
        con = wh.backend.con
        cids = [
            r[0]
            for r in con.execute(
                "SELECT customer_id FROM profiles ORDER BY orders DESC, customer_id LIMIT 3"
            ).fetchall()
        ]
        cids += [
            r[0]
            for r in con.execute(
                "SELECT customer_id FROM profiles ORDER BY hash(customer_id) LIMIT 4"
            ).fetchall()
        ]
        cache: dict[Any, Any] = {}
        for cid in cids + cids[:2]:  # the first visits compile, the later ones reuse
            assert customer(wh, cid, cache) == customer(wh, cid), cid
        assert customer(wh, "cus_nobody", cache) is None
        index = NameIndex.build(con)
        by_node = NodeIndex.build(con)
        names = [
            r[0]
            for r in con.execute(
                "SELECT lower(first_name) FROM profiles WHERE first_name IS NOT NULL "
                "ORDER BY hash(customer_id) LIMIT 3"
            ).fetchall()
        ]
        last = con.execute(
            "SELECT last_name FROM profiles WHERE last_name IS NOT NULL LIMIT 1"
        ).fetchone()[0]
        for q in ["a", "mar", "zzzz", last, last.upper(), cids[0][:6], *names]:
            plain = search(wh, q, "1")
            fast = search(wh, q, "1", names=index, nodes=by_node)
            assert [h["customer_id"] for h in fast] == [h["customer_id"] for h in plain], q
    snap.close()


# -- what the dashboard changes (these run last: they change the shared project) ----------------
def _db(project: Path) -> Any:
    import duckdb

    return duckdb.connect(str(project / "warehouse.duckdb"), read_only=True)


def test_campaigns_page_shows_the_funnel_and_each_arms_lift_with_its_interval(
    admin: Any, server: str
) -> None:
    page, watch = _open(admin, f"{server}/campaigns")
    try:
        text = page.locator("main").inner_text()
        assert "spring" in text and "Funnel of the last run" in text
        rows = page.locator("#campaign-spring table.arms tbody tr").all_inner_texts()
        arm_rows = [r for r in rows if r.split("\t")[0] in ("mass", "by_segment", "personal")]
        assert len(arm_rows) == 3, rows
        # every arm's row carries its lift and a [low, high] interval
        assert all(re.search(r"\[-?[\d.]+%, -?[\d.]+%\]", r) for r in arm_rows), arm_rows
        assert page.locator("#campaign-spring ol.funnel li").count() >= 3
        assert all(_charts_drawn(page))
        assert watch.problems == [], watch.problems
    finally:
        page.close()


def test_a_segment_is_synced_to_a_configured_destination(
    admin: Any, server: str, project: Path
) -> None:
    page, watch = _open(admin, f"{server}/segments/vip")
    page.set_default_timeout(120_000)
    try:
        page.select_option("#destination", "crm_file")
        page.click("#sync")
        page.wait_for_selector("#sync-sent")
        sent = int(page.locator("#sync-sent").get_attribute("data-sent"))
        assert watch.problems == [], watch.problems
    finally:
        page.close()
    from segone.web.campaign_view import destinations

    out = Path(
        destinations(project)["crm_file"]["config"]["path"].replace("{list_id}", "segment-vip")
    )
    lines = out.read_text(encoding="utf-8").splitlines()
    assert sent > 0 and len(lines) - 1 == sent  # a header and one line per person sent


def test_borderline_pairs_are_reviewed_and_the_review_is_recorded(
    admin: Any, server: str, project: Path
) -> None:
    page, watch = _open(admin, f"{server}/identity")
    page.set_default_timeout(120_000)
    try:
        rows = page.locator("table.review tbody tr")
        assert rows.count() > 0, "the demo project has probabilistic pairs near the threshold"
        first = rows.nth(0)
        a = first.locator("input[name=a]").get_attribute("value")
        b = first.locator("input[name=b]").get_attribute("value")
        first.locator("button[value=reject]").click()
        first.locator(".reviewed[data-decision=reject]").wait_for()
        assert watch.problems == [], watch.problems
    finally:
        page.close()
    con = _db(project)
    try:
        got = con.execute("SELECT kind, a, b, decided_by FROM identity_decisions").fetchall()
    finally:
        con.close()
    assert ("unlink", min(a, b), max(a, b), "admin") in got


def test_only_an_admin_erases_and_only_after_confirming(browser: Any, server: str) -> None:
    ctx = browser.new_context()
    try:
        page = ctx.new_page()
        login(page, server, token=None)  # the password user
        cookies = {c["name"]: c["value"] for c in ctx.cookies()}
        page.goto(f"{server}/customers?q=a")
        href = page.locator("table.results tbody a").first.get_attribute("href")
        assert page.locator("#erase").count() == 0  # no danger zone for them
        page.goto(server + href)
        assert page.locator("#erase").count() == 0
        html = page.content()
        csrf = re.search(r'name="csrf" value="([^"]+)"', html)
        assert csrf
        with httpx.Client(base_url=server, cookies=cookies) as http:
            r = http.post(f"{href}/erase", data={"csrf": csrf.group(1), "confirm": "yes"})
            assert r.status_code == 403 and "Admins only" in r.text
            assert http.get(href).status_code == 200  # still there
    finally:
        ctx.close()


def _customer_with(project: Path, n_ids: int, skip: set[str]) -> tuple[str, str]:
    con = _db(project)
    try:
        rows = con.execute(
            "SELECT m.customer_id, min(m.node) FILTER (WHERE m.id_type = 'email') "
            "FROM customer_map m JOIN profiles p USING (customer_id) GROUP BY m.customer_id "
            "HAVING count(*) >= $1 AND count(*) FILTER (WHERE m.id_type = 'email') = 1 "
            "ORDER BY m.customer_id",
            [n_ids],
        ).fetchall()
    finally:
        con.close()
    return next((c, e) for c, e in rows if c not in skip)


def test_unmerge_splits_an_identifier_off_the_person(
    admin: Any, server: str, project: Path
) -> None:
    cid, email = _customer_with(project, 3, set())
    page, watch = _open(admin, f"{server}/customers/{cid}")
    page.set_default_timeout(240_000)
    try:
        assert email.split(":", 1)[1] in page.locator("main").inner_text()
        page.select_option("#unmerge-node", email)
        page.click("#unmerge")
        page.wait_for_selector("#confirm")
        assert "Split email off" in page.locator("h1").inner_text()
        page.click("#confirm")
        page.wait_for_selector("#done")
        assert "Unmerged" in page.locator("h1").inner_text()
        page.goto(f"{server}/customers/{cid}")
        ids = page.locator("section.card").first.inner_text()
        assert email.split(":", 1)[1] not in page.locator("main").inner_text(), ids
        assert watch.problems == [], watch.problems
    finally:
        page.close()
    con = _db(project)
    try:
        now = con.execute(
            "SELECT customer_id FROM customer_map WHERE node = $1", [email]
        ).fetchone()
        split = con.execute("SELECT kind FROM identity_decisions WHERE a = $1", [email]).fetchone()
    finally:
        con.close()
    assert now is not None and now[0] != cid  # a customer of its own
    assert split == ("split",)


def test_erase_asks_then_removes_the_person_everywhere(
    admin: Any, server: str, project: Path
) -> None:
    cid, email = _customer_with(project, 2, set())
    page, watch = _open(admin, f"{server}/customers/{cid}")
    page.set_default_timeout(240_000)
    try:
        page.click("#erase")
        page.wait_for_selector("#confirm")
        assert "cannot be undone" in page.locator("main").inner_text()
        page.click("#cancel")  # changing one's mind changes nothing
        page.wait_for_url(f"{server}/customers/{cid}")
        page.click("#erase")
        page.click("#confirm")
        page.wait_for_selector("#done")
        assert "erasure" in page.locator("#done").inner_text()
        assert watch.problems == [], watch.problems
    finally:
        page.close()
    cookies = {c["name"]: c["value"] for c in admin.cookies()}
    with httpx.Client(base_url=server, cookies=cookies, timeout=120) as http:
        r = http.get(f"/customers/{cid}")
        assert r.status_code == 404 and "No such customer" in r.text
        r = http.get("/customers/search", params={"q": email.split(":", 1)[1]})
        assert f"/customers/{cid}" not in r.text
    con = _db(project)
    try:
        assert con.execute(
            "SELECT count(*) FROM profiles WHERE customer_id = $1", [cid]
        ).fetchone() == (0,)
        assert con.execute('SELECT route FROM erasures ORDER BY "at" DESC LIMIT 1').fetchone() == (
            "web",
        )
    finally:
        con.close()

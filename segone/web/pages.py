"""The dashboard's routes: login, the pages, their HTMX fragments, and error pages.

Each page is a named function ``(dash, request, session) -> Response`` wrapped by ``_page``,
which checks the session (else redirects to the login page), checks the CSRF token of every
POST, runs the page's queries on a worker thread, and turns any failure into an error page (a
traceback is logged, never shown). Every answer carries the security headers of
``segone.web.security``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import quote

from fastapi import FastAPI, Request
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from segone.api.auth import Auth
from segone.exceptions import SegoneError, StoreError
from segone.store.snapshot import WarehouseSnapshot
from segone.web import STATIC_DIR, TEMPLATE_DIR, actions, builder, campaign_view, data
from segone.web.security import (
    SECURITY_HEADERS,
    SESSION_COOKIE,
    SESSION_SECONDS,
    Session,
    Signer,
    check_password,
    load_secret,
    load_users,
    state_dir,
)

log = logging.getLogger("segone.web")
T = TypeVar("T")
LOGIN_COOKIE = "segone_login"

NAV = (
    ("/", "Overview"),
    ("/customers", "Customers"),
    ("/segments", "Segments"),
    ("/lifecycle", "Lifecycle"),
    ("/predictions", "Predictions"),
    ("/campaigns", "Campaigns"),
    ("/identity", "Identity"),
    ("/live", "Live"),
)


class PageError(Exception):
    """A page cannot be shown; the message says why and what to do (shown to the user)."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


def _fmt_num(v: Any, digits: int = 0) -> str:
    if v is None:
        return "–"
    try:
        return f"{float(v):,.{digits}f}"
    except (TypeError, ValueError):
        return str(v)


def _fmt_pct(v: Any, digits: int = 0) -> str:
    return "–" if v is None else f"{float(v):.{digits}%}"


def _fmt_date(v: Any, fmt: str = "%Y-%m-%d") -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "–"
    if hasattr(v, "strftime"):
        try:
            return v.strftime(fmt)
        except ValueError:
            return "–"
    return str(v)[: len(datetime(2000, 1, 1).strftime(fmt))]


def _fmt_value(v: Any) -> str:
    """Any profile value, readably (numbers with separators, lists joined, dates)."""
    if isinstance(v, bool) or v is None:
        return "–" if v is None else str(v).lower()
    if isinstance(v, float):
        return _fmt_num(v, 2 if abs(v) < 1000 else 0)
    if hasattr(v, "strftime"):
        return _fmt_date(v, "%Y-%m-%d %H:%M")
    return _fmt_list(v)


def _fmt_list(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, dict):
        return ", ".join(
            f"{k} {x:.0%}" if isinstance(x, float) else f"{k} {x}" for k, x in v.items()
        )
    if hasattr(v, "tolist"):
        v = v.tolist()
    if isinstance(v, list | tuple):
        return ", ".join(map(str, v)) or "–"
    return str(v)


class Dashboard:
    """What the pages share: the project, the templates, the signer, the warehouse copy and
    the real-time engine."""

    def __init__(self, root: Path, settings: Any, engine: Any) -> None:
        self.root = Path(root)
        self.settings = settings
        self.engine = engine
        self.auth = Auth.from_settings(settings.server, root)
        self.signer = Signer(load_secret(self.root))
        self.snapshot = WarehouseSnapshot(
            Path(settings.warehouse_path), state_dir(self.root), threads=2
        )
        self.env = Environment(
            loader=FileSystemLoader(str(TEMPLATE_DIR)),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(
            num=_fmt_num, pct=_fmt_pct, date=_fmt_date, lst=_fmt_list, val=_fmt_value
        )
        self.env.globals["nav"] = NAV
        self._memo: dict[tuple[Any, ...], Any] = {}
        self._memo_version: Any = None

    def memo(self, key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
        """``compute()``, once per copy of the warehouse (and per version of the project's
        segment files): what a page shows changes only when a build or a segment file does."""
        version = (self.snapshot.version, _files(self.root / "segments"))
        if version != self._memo_version:
            self._memo.clear()
            self._memo_version = version
        if key not in self._memo:
            if len(self._memo) > 256:
                self._memo.pop(next(iter(self._memo)))
            self._memo[key] = compute()
        return self._memo[key]

    def built(self, name: str, compute: Callable[[Any], T], *key: Any) -> T:
        """What page ``name`` shows: ``compute(warehouse)`` on the dashboard's copy of the
        warehouse, once per build (memoised under ``(name, *key)``); a project without a build
        raises the "No build yet" empty state."""
        with self.snapshot.read() as wh:
            _require_build(wh)
            return cast(T, self.memo((name, *key), lambda: compute(wh)))

    def sql_cache(self) -> dict[Any, Any]:
        """Compiled per-person queries (``fast.Prepared``), kept as long as this copy."""
        return cast(dict[Any, Any], self.memo(("sql-cache",), dict))

    def indexes(self, wh: Any) -> dict[str, Any]:
        """The copy's name and identifier indexes (``fast``) for the customer search."""
        from segone.web.fast import NameIndex, NodeIndex

        con = wh.backend.con
        return {
            "names": self.memo(("name-index",), lambda: NameIndex.build(con)),
            "nodes": self.memo(("node-index",), lambda: NodeIndex.build(con)),
        }

    @property
    def project(self) -> Any:
        from segone.project import Project

        return Project(self.settings)

    def render(
        self,
        template: str,
        request: Request,
        session: Session | None,
        status: int = 200,
        **ctx: Any,
    ) -> HTMLResponse:
        state = self.snapshot.state()
        html = self.env.get_template(template).render(
            request=request,
            path=request.url.path,
            user=session.user if session else None,
            csrf=self.signer.csrf(session) if session else "",
            snapshot=state,
            **ctx,
        )
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    def session(self, request: Request) -> Session | None:
        return self.signer.read(request.cookies.get(SESSION_COOKIE))


def _files(folder: Path) -> tuple[tuple[str, int], ...]:
    """The YAML files of ``folder`` with their modification times (a cache key)."""
    if not folder.exists():
        return ()
    return tuple((f.name, f.stat().st_mtime_ns) for f in sorted(folder.glob("*.y*ml")))


PageFn = Callable[["Dashboard", Request, Session, Mapping[str, Any]], Response]


def _page(
    dash: Dashboard, fn: PageFn, *, fragment: bool = False
) -> Callable[..., Awaitable[Response]]:
    """``fn`` as a route: logged in, CSRF-checked (POST), run on a worker thread, and every
    failure an error page."""

    async def route(request: Request) -> Response:
        session = dash.session(request)
        if session is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            if request.headers.get("hx-request"):
                return Response(
                    status_code=401, headers={**SECURITY_HEADERS, "HX-Redirect": "/login"}
                )
            return RedirectResponse(
                f"/login?next={quote(target, safe='')}", status_code=303, headers=SECURITY_HEADERS
            )
        form: Mapping[str, Any] = {}
        if request.method == "POST":
            form = await request.form()
            token = form.get("csrf") or request.headers.get("x-csrf-token")
            if not dash.signer.check_csrf(session, str(token) if token else None):
                return _error(
                    dash,
                    request,
                    session,
                    PageError(
                        403,
                        "Form expired",
                        "This form's security token is missing or stale. "
                        "Reload the page and try again.",
                    ),
                    fragment,
                )
        try:
            return await run_in_threadpool(fn, dash, request, session, form)
        except PageError as exc:
            return _error(dash, request, session, exc, fragment)
        except StoreError as exc:
            log.warning("dashboard: warehouse unavailable: %s", type(exc).__name__)
            return _error(
                dash,
                request,
                session,
                PageError(
                    503,
                    "Warehouse busy",
                    "The warehouse is in use by another segone process (a build or a load) and no "
                    "copy of it is available yet. Reload this page when it has finished.",
                ),
                fragment,
            )
        except SegoneError as exc:
            return _error(
                dash, request, session, PageError(400, "Cannot show this", str(exc)), fragment
            )
        except Exception:
            log.exception("dashboard: unexpected error on %s", request.url.path)
            return _error(
                dash,
                request,
                session,
                PageError(
                    500,
                    "Something went wrong",
                    "The page failed; the server log has the details. Nothing was changed.",
                ),
                fragment,
            )

    return route


def _error(
    dash: Dashboard, request: Request, session: Session | None, exc: PageError, fragment: bool
) -> Response:
    tpl = "_error_fragment.html" if fragment else "error.html"
    return dash.render(tpl, request, session, status=exc.status, error=exc)


def _require_build(wh: Any) -> None:
    if "profiles" not in wh.tables() or wh.count("profiles") == 0:
        raise PageError(
            200,
            "No build yet",
            "This project has no profiles yet. Load data with `segone ingest KIND FILE` "
            "(or try `segone demo`), then run `segone build`; this page fills in after it.",
        )


def _empty_ok(fn: PageFn) -> PageFn:
    """Pages that show an empty state (a 200 page saying what to run) rather than an error."""

    def wrapped(
        dash: Dashboard, request: Request, session: Session, form: Mapping[str, Any]
    ) -> Response:
        try:
            return fn(dash, request, session, form)
        except PageError as exc:
            if exc.status == 200:
                return dash.render("empty.html", request, session, error=exc)
            raise
        except StoreError:
            if not dash.snapshot.state().exists:
                return dash.render(
                    "empty.html",
                    request,
                    session,
                    error=PageError(
                        200,
                        "No warehouse yet",
                        "This project has no warehouse file yet. Run `segone init`, load "
                        "data with `segone ingest KIND FILE` (or try `segone demo`), then "
                        "`segone build`.",
                    ),
                )
            raise

    return wrapped


# -- pages ---------------------------------------------------------------------------------------
@_empty_ok
def overview(
    dash: Dashboard, request: Request, session: Session, form: Mapping[str, Any]
) -> Response:
    ov = dash.built("overview", data.overview)
    return dash.render("overview.html", request, session, ov=ov)


@_empty_ok
def customers(
    dash: Dashboard, request: Request, session: Session, form: Mapping[str, Any]
) -> Response:
    q = request.query_params.get("q", "")
    with dash.snapshot.read() as wh:
        _require_build(wh)
        cc = dash.settings.identity.default_country_code
        hits = data.search(wh, q, cc, **dash.indexes(wh)) if q else []
    return dash.render("customers.html", request, session, q=q, hits=hits)


def customer_search(
    dash: Dashboard, request: Request, session: Session, form: Mapping[str, Any]
) -> Response:
    q = request.query_params.get("q", "")
    with dash.snapshot.read() as wh:
        _require_build(wh)
        cc = dash.settings.identity.default_country_code
        hits = data.search(wh, q, cc, **dash.indexes(wh)) if q else []
    return dash.render("_results.html", request, session, q=q, hits=hits)


@_empty_ok
def customer(
    dash: Dashboard, request: Request, session: Session, form: Mapping[str, Any]
) -> Response:
    cid = request.path_params["customer_id"]
    c = dash.built("customer", lambda wh: data.customer(wh, cid, dash.sql_cache()), cid)
    if c is None:
        raise PageError(
            404, "No such customer", f"No customer has the id {cid!r} in the last build."
        )
    return dash.render(
        "customer.html", request, session, c=c, p=c["profile"], live=_live_profile(dash, c)
    )


def _live_profile(dash: Dashboard, c: Mapping[str, Any]) -> dict[str, Any] | None:
    """The person as the running server sees them (online store), by their identifiers; None
    when the server has never met them (nothing published, no live events)."""
    from anyio.from_thread import run as from_thread

    tried = 0
    for ident in c["identifiers"]:
        if ident["id_type"] not in ("user_id", "email", "anonymous_id", "phone"):
            continue
        tried += 1
        try:
            doc = from_thread(dash.engine.profile, ident["node"])
        except SegoneError:
            return None
        if doc is not None:
            return dict(doc)
        if tried >= 4:
            break
    return None


@_empty_ok
def segments(
    dash: Dashboard, request: Request, session: Session, form: Mapping[str, Any]
) -> Response:
    sg = dash.built("segments", lambda wh: data.segments(wh, dash.project))
    return dash.render("segments.html", request, session, **sg)


@_empty_ok
def segment(
    dash: Dashboard, request: Request, session: Session, form: Mapping[str, Any]
) -> Response:
    name = request.path_params["name"]
    sg = dash.built("segment", lambda wh: data.segment(wh, dash.project, name), name)
    if sg is None:
        raise PageError(404, "No such segment", f"There is no segment {name!r}.")
    dests = campaign_view.destinations(dash.root)
    return dash.render("segment.html", request, session, destinations=dests, **sg)


def _as_of(wh: Any) -> datetime:
    p = wh.table("profiles")
    return wh.execute(p.as_of.max()).to_pydatetime()


@_empty_ok
def builder_page(
    dash: Dashboard, request: Request, session: Session, form: Mapping[str, Any]
) -> Response:
    from segone.segments import profile_attributes

    with dash.snapshot.read() as wh:
        _require_build(wh)
        attrs = builder.attributes(profile_attributes(wh))
        draft = builder.Draft(conditions=[builder.Condition("orders", "gte", "2")])
        pv = builder.preview(wh, dash.project, draft, _as_of(wh))
    return dash.render(
        "builder.html", request, session, attrs=attrs, draft=draft, pv=pv, ops=OPS_SHOWN
    )


OPS_SHOWN = (
    ("eq", "="),
    ("ne", "≠"),
    ("gt", ">"),
    ("gte", "≥"),
    ("lt", "<"),
    ("lte", "≤"),
    ("in", "is one of"),
    ("not_in", "is none of"),
    ("contains", "contains"),
    ("is_null", "is missing"),
)


def builder_rows(
    dash: Dashboard, request: Request, session: Session, form: Mapping[str, Any]
) -> Response:
    """The builder's form again with a row added or removed (HTMX swaps the whole form)."""
    from segone.segments import profile_attributes

    draft = builder.draft_from_form(form)
    action = str(form.get("action", ""))
    if action == "add" and len(draft.conditions) < builder.MAX_ROWS:
        draft.conditions.append(builder.Condition())
    elif action.startswith("remove-"):
        i = int(action.split("-", 1)[1])
        if 0 <= i < len(draft.conditions):
            del draft.conditions[i]
    with dash.snapshot.read() as wh:
        attrs = builder.attributes(profile_attributes(wh))
        pv = builder.preview(wh, dash.project, draft, _as_of(wh))
    return dash.render(
        "_builder_form.html", request, session, attrs=attrs, draft=draft, pv=pv, ops=OPS_SHOWN
    )


def builder_preview(
    dash: Dashboard, request: Request, session: Session, form: Mapping[str, Any]
) -> Response:
    draft = builder.draft_from_form(form)
    with dash.snapshot.read() as wh:
        pv = builder.preview(wh, dash.project, draft, _as_of(wh))
    return dash.render("_preview.html", request, session, pv=pv, draft=draft)


def builder_save(
    dash: Dashboard, request: Request, session: Session, form: Mapping[str, Any]
) -> Response:
    draft = builder.draft_from_form(form)
    with dash.snapshot.read() as wh:
        pv = builder.preview(wh, dash.project, draft, _as_of(wh))
    if pv.error:
        raise PageError(400, "Cannot save", pv.error)
    path = builder.save(dash.root, draft)
    return dash.render(
        "_preview.html",
        request,
        session,
        pv=pv,
        draft=draft,
        saved=f"segments/{path.name}",
    )


@_empty_ok
def lifecycle(
    dash: Dashboard, request: Request, session: Session, form: Mapping[str, Any]
) -> Response:
    dates = dash.built("dates", data.snapshot_dates)
    if not dates:
        raise PageError(
            200,
            "No history yet",
            "Lifecycle moves are recorded by snapshots. Run `segone segments backfill "
            "--from YYYY-MM-DD --to YYYY-MM-DD` (or `segone segments snapshot` after each "
            "build) and this page fills in.",
        )
    start = request.query_params.get("from") or dates[0]
    end = request.query_params.get("to") or dates[-1]
    for d in (start, end):
        try:
            datetime.strptime(d, "%Y-%m-%d")
        except ValueError:
            raise PageError(400, "Bad date", f"{d!r} is not a date (YYYY-MM-DD).") from None
    lc = dash.built("lifecycle", lambda wh: data.lifecycle(wh, start, end), start, end)
    return dash.render("lifecycle.html", request, session, lc=lc, dates=dates, start=start, end=end)


@_empty_ok
def predictions(
    dash: Dashboard, request: Request, session: Session, form: Mapping[str, Any]
) -> Response:
    pr = dash.built("predictions", data.predictions)
    return dash.render("predictions.html", request, session, pr=pr)


@_empty_ok
def campaigns(
    dash: Dashboard, request: Request, session: Session, form: Mapping[str, Any]
) -> Response:
    files = _files(dash.root / "campaigns")  # the page follows the campaign files too
    cp = dash.built("campaigns", lambda wh: campaign_view.campaigns(wh, dash.root), files)
    return dash.render("campaigns.html", request, session, cp=cp)


@_empty_ok
def identity(
    dash: Dashboard, request: Request, session: Session, form: Mapping[str, Any]
) -> Response:
    idn = dash.built("identity", data.identity)
    return dash.render("identity.html", request, session, idn=idn)


def live(dash: Dashboard, request: Request, session: Session, form: Mapping[str, Any]) -> Response:
    lv = data.live(dash.engine.store)
    return dash.render("live.html", request, session, lv=lv)


def live_stats(
    dash: Dashboard, request: Request, session: Session, form: Mapping[str, Any]
) -> Response:
    lv = data.live(dash.engine.store)
    return dash.render("_live_stats.html", request, session, lv=lv)


# -- login ---------------------------------------------------------------------------------------
def _safe_next(target: str | None) -> str:
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


async def login_form(request: Request) -> Response:
    dash: Dashboard = request.app.state.web
    nonce = secrets.token_urlsafe(16)
    resp = dash.render(
        "login.html",
        request,
        None,
        login_csrf=dash.signer.login_csrf(nonce),
        next=_safe_next(request.query_params.get("next")),
        message=None,
    )
    _set_cookie(resp, LOGIN_COOKIE, nonce, max_age=3600)
    return resp


async def login_submit(request: Request) -> Response:
    dash: Dashboard = request.app.state.web
    form = await request.form()
    nonce = request.cookies.get(LOGIN_COOKIE) or ""
    target = _safe_next(str(form.get("next") or "/"))
    token = str(form.get("csrf") or "")
    if not nonce or not secrets.compare_digest(token, dash.signer.login_csrf(nonce)):
        return _login_again(dash, request, target, "The login form expired; please try again.", 403)
    user = await run_in_threadpool(_check_login, dash, form)
    if isinstance(user, str) and user.startswith("!"):
        await asyncio.sleep(0.5)  # a little friction for guessing
        return _login_again(dash, request, target, user[1:], 401)
    resp = RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)
    _set_cookie(resp, SESSION_COOKIE, dash.signer.issue(user), max_age=SESSION_SECONDS)
    resp.delete_cookie(LOGIN_COOKIE, path="/")
    return resp


def _check_login(dash: Dashboard, form: Mapping[str, Any]) -> str:
    """The user name of a valid login, or ``!`` and why it failed."""
    token = str(form.get("token") or "").strip()
    name = str(form.get("username") or "").strip()
    password = str(form.get("password") or "")
    if token:
        # every key the server knows (settings and `segone keys`), by its scopes: only a key
        # holding the admin scope opens the dashboard
        key = dash.auth.ring.lookup(token)
        if key is not None and "admin" in key.scopes:
            return "admin"
        if key is not None:
            return "!Write keys and decide tokens cannot open the dashboard; use an admin token."
        return "!That token is not valid."
    if name and password:
        if name == actions.ADMIN_USER:  # that name is an admin-token login's
            return "!Log in as admin with an admin token."
        users = load_users(dash.root)
        stored = users.get(name)
        # hash even for an unknown user, so the time taken does not say which names exist
        ok = check_password(password, stored or "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA$AA")
        if stored and ok:
            return name
        return "!Wrong user name or password."
    return "!Enter an admin token, or a user name and password."


def _login_again(
    dash: Dashboard, request: Request, target: str, message: str, status: int
) -> Response:
    nonce = secrets.token_urlsafe(16)
    resp = dash.render(
        "login.html",
        request,
        None,
        status=status,
        login_csrf=dash.signer.login_csrf(nonce),
        next=target,
        message=message,
    )
    _set_cookie(resp, LOGIN_COOKIE, nonce, max_age=3600)
    return resp


def logout(
    dash: Dashboard, request: Request, session: Session, form: Mapping[str, Any]
) -> Response:
    resp = RedirectResponse("/login", status_code=303, headers=SECURITY_HEADERS)
    resp.delete_cookie(SESSION_COOKIE, path="/")
    return resp


def _set_cookie(resp: Response, name: str, value: str, max_age: int) -> None:
    resp.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=False,  # served on plain HTTP locally; behind TLS the proxy adds Secure
    )


class _StaticWithHeaders:
    """The package's static files, with the dashboard's headers and a day of caching (file
    names carry their versions)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control"
                ]
                headers += [
                    (b"x-content-type-options", b"nosniff"),
                    (b"cache-control", b"public, max-age=86400"),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install(app: FastAPI, dash: Dashboard) -> None:
    """Add the dashboard's routes and static files to ``app``."""
    app.state.web = dash
    get = ["GET"]
    post = ["POST"]
    routes: list[tuple[str, Any, list[str]]] = [
        ("/login", login_form, get),
        ("/login", login_submit, post),
        ("/logout", _page(dash, logout), post),
        ("/", _page(dash, overview), get),
        ("/customers", _page(dash, customers), get),
        ("/customers/search", _page(dash, customer_search, fragment=True), get),
        ("/customers/{customer_id}", _page(dash, customer), get),
        ("/customers/{customer_id}/erase", _page(dash, actions.erase), post),
        ("/customers/{customer_id}/unmerge", _page(dash, actions.unmerge), post),
        ("/segments", _page(dash, segments), get),
        ("/segments/new", _page(dash, builder_page), get),
        ("/segments/new/rows", _page(dash, builder_rows, fragment=True), post),
        ("/segments/new/preview", _page(dash, builder_preview, fragment=True), post),
        ("/segments/new/save", _page(dash, builder_save, fragment=True), post),
        ("/segments/{name}", _page(dash, segment), get),
        ("/segments/{name}/sync", _page(dash, actions.sync_segment, fragment=True), post),
        ("/lifecycle", _page(dash, lifecycle), get),
        ("/predictions", _page(dash, predictions), get),
        ("/identity", _page(dash, identity), get),
        ("/identity/review", _page(dash, actions.review, fragment=True), post),
        ("/campaigns", _page(dash, campaigns), get),
        ("/live", _page(dash, live), get),
        ("/live/stats", _page(dash, live_stats, fragment=True), get),
    ]
    for path, endpoint, methods in routes:
        app.add_api_route(path, endpoint, methods=methods, include_in_schema=False)
    app.mount(
        "/static",
        _StaticWithHeaders(StaticFiles(directory=str(STATIC_DIR))),
        name="web-static",
    )

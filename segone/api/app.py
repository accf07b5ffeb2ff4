"""The FastAPI application: Segment-compatible tracking endpoints, decisions, profiles, health.

``create_app(settings, engine)`` only wires: it puts the engine, the keys and the limits on
``app.state.api`` (an ``ApiState``) and declares the routes, whose handlers are the named
functions of this module. ``Engine.start``/``stop`` follow the app's lifespan. Handlers only
authenticate, parse and hand over: every tracking answer is sent after the engine has committed
the messages.

The hot endpoints (tracking, ``/v1/decide``, ``/v1/feedback``) are handlers of one ``Call``,
answered by ``FastPath`` ahead of FastAPI's routing and, alike, by their FastAPI routes (which
also give the OpenAPI document). Both sit inside the one middleware stack of
``segone.api.middleware`` (request id, access log, tracing, CORS, body limit).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from urllib.parse import unquote

import orjson
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from segone.api import schemas
from segone.api.auth import Auth, basic_user
from segone.api.errors import (
    ApiError,
    ErrorEnvelope,
    api_error_response,
    detail,
    envelope,
    install,
    internal_error,
    log,
    log_unhandled,
)
from segone.api.logs import redact_path
from segone.api.middleware import DRAIN_BYTES, ORIGIN_KEY, stack
from segone.api.segment import (
    TYPES,
    Limits,
    body_write_key,
    decode,
    parse_doc,
    parse_json,
    too_large,
)
from segone.config import Settings
from segone.exceptions import DecisionError, NotFoundError, OnlineStoreError
from segone.online.engine import Engine
from segone.online.process import freeze_gc as freeze

__all__ = ["DRAIN_BYTES", "ROUTE_SCOPES", "ApiState", "Call", "SegoneAPI", "create_app"]

# decide/feedback bodies are small JSON documents
MAX_JSON_BYTES = 64 * 1024
# analytics.js posts to these short names (its plugin sends to ``/v1/`` + the type's initial)
SHORT_NAMES = {
    "t": "track",
    "p": "page",
    "i": "identify",
    "g": "group",
    "a": "alias",
    "s": "screen",
    "b": "batch",
}
# the cookie analytics.js keeps the anonymous id in (JSON text, URL-encoded)
ANONYMOUS_ID_COOKIE = "ajs_anonymous_id"

DESCRIPTION = """\
Real-time segone: Segment-compatible event ingestion (point any Segment or RudderStack SDK, or
analytics.js in a browser, at this server), live profiles, and next-best-action decisions.

Every error has one shape: `{"error": {"status", "code", "message", "details"}}`.
"""

# the scope each route of the API needs (segone.api.auth), checked in its handler (``authorize``
# for FastAPI routes); a module adding routes under /v1 adds them here (a test holds every /v1
# route to this table and sends every kind of key to each)
TRACKING_PATHS = (*(f"/v1/{e}" for e in (*TYPES, "batch")), *(f"/v1/{s}" for s in SHORT_NAMES))
ROUTE_SCOPES: dict[tuple[str, str], str] = {
    **{("POST", p): "ingest" for p in TRACKING_PATHS},
    ("POST", "/v1/decide"): "decide",
    ("POST", "/v1/feedback"): "decide",
    ("GET", "/v1/profiles/{identifier:path}"): "read",
    ("DELETE", "/v1/profiles/{identifier:path}"): "erase",
    ("GET", "/v1/erasures"): "read",
    ("GET", "/v1/suppressions/{identifier:path}"): "read",
    ("PUT", "/v1/suppressions/{identifier:path}"): "admin",
    ("DELETE", "/v1/suppressions/{identifier:path}"): "admin",
    ("GET", "/v1/campaigns"): "admin",
    ("GET", "/v1/campaigns/{name}/report"): "admin",
}
PUBLIC_PATHS = frozenset({"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
HOT_PATHS = frozenset({*TRACKING_PATHS, "/v1/decide", "/v1/feedback"})


@dataclass(frozen=True)
class ApiState:
    """What the handlers share (``app.state.api``)."""

    engine: Engine
    auth: Auth
    limits: Limits
    freeze_gc: bool = False


Reader = Callable[[int], Awaitable[bytes]]  # the request body, refused (413) past a cap


@dataclass(frozen=True, slots=True)
class Call:
    """One request to a hot endpoint, as the fast path and the FastAPI route both give it."""

    state: ApiState
    headers: Mapping[str, str]
    read: Reader
    scope: Scope

    @property
    def origin(self) -> str | None:
        """The origin of a request from another site's page (set by ``Cors``), else None."""
        return self.scope.get(ORIGIN_KEY)


Handler = Callable[[Call], Awaitable[Response]]


def _json(doc: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(doc), status_code=status, media_type="application/json")


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": ErrorEnvelope} for s in statuses}


async def read_body(request: Request, cap: int) -> bytes:
    """The raw request body, refusing (413) more than ``cap`` bytes before holding them."""
    return await _receive_body(request.receive, request.headers, cap)


HANDLED = (ApiError, DecisionError, NotFoundError, OnlineStoreError)


def error_response(exc: Exception) -> Response:
    """The error envelope for an exception of ``HANDLED`` (what handlers raise on purpose; any
    other exception is a bug, answered 500 by the catch-all)."""
    if isinstance(exc, ApiError):
        return api_error_response(exc)
    if isinstance(exc, DecisionError):
        return envelope(400, "invalid_request", str(exc))
    if isinstance(exc, NotFoundError):
        return envelope(404, "not_found", "nothing is known by that identifier")
    if isinstance(exc, OnlineStoreError):
        log.error("online store unavailable: %s", type(exc).__name__)
        return envelope(503, "unavailable", "the online store is unavailable; retry later")
    raise TypeError(f"not an error handlers raise on purpose: {type(exc).__name__}") from exc


async def _handled(request: Request, exc: Exception) -> Response:
    return error_response(exc)


async def _unhandled(request: Request, exc: Exception) -> Response:
    """FastAPI's catch-all: the envelope, and the traceback logged without the message (which
    could quote a trait value)."""
    path = redact_path(request.scope["path"], request.scope.get("query_string", b""))
    log_unhandled(exc, request.method, path)
    return internal_error()


def _storable(raw: Any) -> Any:
    """A rejected message as the quarantine keeps it: as sent, as JSON text (anything JSON
    can hold, however odd), or a note when it cannot be kept (nested too deeply)."""
    if isinstance(raw, str):
        return raw
    try:
        return orjson.dumps(raw).decode()
    except (TypeError, orjson.JSONEncodeError):
        return "(not kept: nested too deeply to store)"


def _required(doc: Mapping[str, Any], *keys: str) -> None:
    missing = [k for k in keys if not isinstance(doc.get(k), str) or not doc[k].strip()]
    if missing:
        raise ApiError(
            400,
            f"{' and '.join(missing)} required (non-empty string)",
            "missing_field",
            [detail("missing_field", f"{k} is required", None, k) for k in missing],
        )


def cookie_anonymous_id(cookie: str | None) -> str | None:
    """The anonymous id analytics.js keeps in its ``ajs_anonymous_id`` cookie (sent along when
    the page's fetch includes credentials and the server shares the site's cookies)."""
    if not cookie or ANONYMOUS_ID_COOKIE not in cookie:
        return None
    for part in cookie.split(";"):
        name, _, value = part.strip().partition("=")
        if name != ANONYMOUS_ID_COOKIE:
            continue
        value = unquote(value).strip()
        if value.startswith('"'):
            try:
                value = orjson.loads(value)
            except orjson.JSONDecodeError:
                return None
        return value.strip() if isinstance(value, str) and value.strip() else None
    return None


def _with_cookie_id(doc: Any, anonymous_id: str) -> None:
    """Messages with neither ``userId`` nor ``anonymousId`` take the cookie's anonymous id."""
    messages = doc.get("batch") if isinstance(doc, dict) and "batch" in doc else [doc]
    if not isinstance(messages, list):
        return
    for m in messages:
        if isinstance(m, dict) and m.get("userId") is None and m.get("anonymousId") is None:
            m["anonymousId"] = anonymous_id


# -- the hot handlers ---------------------------------------------------------------------
async def ingest(endpoint: str, call: Call) -> Response:
    """One tracking request (``endpoint``: batch or a message type): the write key from HTTP
    Basic or the body, the body JSON whatever its ``Content-Type`` (analytics.js sends
    ``text/plain`` to avoid a preflight)."""
    state, headers = call.state, call.headers
    limits = state.limits
    body = await call.read(limits.max_body_bytes)
    header_key = basic_user(headers.get("authorization"))
    if header_key is not None:
        state.auth.write_key(header_key, call.origin)
        doc = decode(body, headers, limits)
    else:
        try:
            doc = decode(body, headers, limits)
        except ApiError:
            # unreadable, so no writeKey in it: an unauthenticated caller learns nothing more
            doc = None
        state.auth.write_key(body_write_key(doc), call.origin)
    if "cookie" in headers and (anon := cookie_anonymous_id(headers.get("cookie"))):
        _with_cookie_id(doc, anon)
    parsed = parse_doc(doc, endpoint, limits)
    now = datetime.now(UTC)
    result = await state.engine.ingest(
        parsed.messages,
        [
            {"reason": f"{r.code}: {r.message}", "message": _storable(r.raw), "received_at": now}
            for r in parsed.rejected
        ],
    )
    return _json(
        {
            "success": True,
            "accepted": result["accepted"],
            "duplicates": result["duplicates"],
            "rejected": [r.as_detail() for r in parsed.rejected],
            "dropped": parsed.dropped(),
            **({"refused_erased": n} if (n := result.get("refused_erased")) else {}),
        }
    )


async def decide(call: Call) -> Response:
    state = call.state
    state.auth.token(call.headers.get("authorization"), "decide", call.origin)
    body = _object(await call.read(MAX_JSON_BYTES))
    _required(body, "identifier")
    return _json(await state.engine.decide(body))


async def feedback(call: Call) -> Response:
    state = call.state
    state.auth.token(call.headers.get("authorization"), "decide", call.origin)
    body = _object(await call.read(MAX_JSON_BYTES))
    _required(body, "decision_id", "kind")
    return _json(await state.engine.feedback(body))


HOT: dict[str, Handler] = {
    **{f"/v1/{e}": partial(ingest, e) for e in (*TYPES, "batch")},
    **{f"/v1/{s}": partial(ingest, e) for s, e in SHORT_NAMES.items()},
    "/v1/decide": decide,
    "/v1/feedback": feedback,
}


# -- the other handlers -------------------------------------------------------------------
def _state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


def authorize(request: Request, scope: str) -> ApiState:
    """The app's state, once the request's Bearer key holds ``scope`` (else 401/403/429)."""
    state = _state(request)
    state.auth.token(request.headers.get("authorization"), scope, request.scope.get(ORIGIN_KEY))
    return state


async def get_profile(identifier: str, request: Request) -> Response:
    doc = await authorize(request, "read").engine.profile(identifier)
    if doc is None:
        raise ApiError(404, "no profile has this identifier", "profile_not_found")
    return _json(doc)


async def delete_profile(identifier: str, request: Request) -> Response:
    doc = await authorize(request, "erase").engine.erase(identifier)
    if doc is None:
        raise ApiError(404, "no profile has this identifier", "profile_not_found")
    return _json(doc)


async def get_erasures(request: Request) -> Response:
    return _json({"erasures": await authorize(request, "read").engine.erasures()})


async def put_suppression(identifier: str, request: Request) -> Response:
    state = authorize(request, "admin")
    body = _object(await read_body(request, MAX_JSON_BYTES))
    return _json(await state.engine.suppress(identifier, body))


async def get_suppression(identifier: str, request: Request) -> Response:
    doc = await authorize(request, "read").engine.suppression(identifier)
    if doc is None:
        raise ApiError(404, "this identifier is not suppressed", "suppression_not_found")
    return _json(doc)


async def delete_suppression(identifier: str, request: Request) -> Response:
    if not await authorize(request, "admin").engine.unsuppress(identifier):
        raise ApiError(404, "this identifier is not suppressed", "suppression_not_found")
    return _json({"lifted": True})


async def health() -> Response:
    from segone import __version__

    return _json({"status": "ok", "version": __version__})


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    state: ApiState = app.state.api
    await state.engine.start()
    if state.freeze_gc:
        freeze()
    try:
        yield
    finally:
        await state.engine.stop()


# -- wiring -------------------------------------------------------------------------------
def _route(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A hot endpoint's handler as a FastAPI route."""

    async def route(request: Request) -> Response:
        return await handler(
            Call(
                _state(request),
                request.headers,
                lambda cap: read_body(request, cap),
                request.scope,
            )
        )

    return route


def _body_doc(model: type[Any], security: list[str]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
            },
        },
        "security": [{s: []} for s in security],
    }


def _tracking_description(endpoint: str, limits: Limits) -> str:
    return (
        "Authenticate with HTTP Basic auth (write key as user name, empty password) or "
        "`writeKey` in the body. The body may be gzip-compressed "
        f"(`Content-Encoding: gzip`). Limits: {limits.max_message_bytes} bytes per "
        f"message (400), {limits.max_batch_bytes} per request (413). Answered after "
        "the messages are committed."
        + (
            " Invalid messages are listed in `rejected` (and quarantined); the rest are "
            "accepted. A batch with no valid message is a 400."
            if endpoint == "batch"
            else ""
        )
        + ' Spec fields of the wrong type (`"total": "NaN"`, a price of 1e300, '
        '`"revenue": {}`) are dropped and listed in `dropped`; a timestamp outside '
        "the accepted window is replaced by the time received."
        f" analytics.js posts the same to `/v1/{endpoint[0]}`."
    )


def _add_tracking_routes(app: FastAPI, limits: Limits) -> None:
    for endpoint in (*TYPES, "batch"):
        model = schemas.MESSAGE_MODELS[endpoint]
        what = "a batch of messages" if endpoint == "batch" else f"one {endpoint} message"
        app.add_api_route(
            f"/v1/{endpoint}",
            _route(HOT[f"/v1/{endpoint}"]),
            methods=["POST"],
            name=endpoint,
            summary=f"Send {what} (Segment tracking API)",
            description=_tracking_description(endpoint, limits),
            tags=["tracking"],
            response_model=schemas.IngestResponse,
            responses=_errors(400, 401, 403, 413, 415, 429),
            openapi_extra=_body_doc(model, ["writeKey"]),
        )
    for short, endpoint in SHORT_NAMES.items():  # analytics.js's names: not in the document
        app.add_api_route(
            f"/v1/{short}",
            _route(HOT[f"/v1/{short}"]),
            methods=["POST"],
            name=f"{endpoint}_short",
            include_in_schema=False,
        )


def _add_routes(app: FastAPI) -> None:
    decide_doc = _body_doc(schemas.DecideRequest, ["decideToken", "adminToken"])
    app.add_api_route(
        "/v1/decide",
        _route(decide),
        methods=["POST"],
        name="decide",
        tags=["decisions"],
        summary="Rank items/offers for one person and choose the follow-up channel",
        response_model=schemas.Document,
        responses=_errors(400, 401, 403, 413, 422, 429),
        openapi_extra=decide_doc,
    )
    app.add_api_route(
        "/v1/feedback",
        _route(feedback),
        methods=["POST"],
        name="feedback",
        tags=["decisions"],
        summary="Report an impression, click or conversion of a decision",
        response_model=schemas.Document,
        responses=_errors(400, 401, 403, 404, 413, 422, 429),
        openapi_extra=_body_doc(schemas.FeedbackRequest, ["decideToken", "adminToken"]),
    )
    admin: dict[str, Any] = {"security": [{"adminToken": []}]}
    profiles = "/v1/profiles/{identifier:path}"
    suppressions = "/v1/suppressions/{identifier:path}"
    for path, method, endpoint, summary, statuses in (
        (
            profiles,
            "GET",
            get_profile,
            "One person's live profile, by any identifier (e.g. user_id:u-1001)",
            (401, 403, 404),
        ),
        (
            profiles,
            "DELETE",
            delete_profile,
            "Erase the person with this identifier from the online store and the warehouse",
            (401, 403, 404),
        ),
        (
            "/v1/erasures",
            "GET",
            get_erasures,
            "The audit of every erasure: when, through which route, rows removed (no PII)",
            (401, 403),
        ),
        (
            suppressions,
            "PUT",
            put_suppression,
            "Suppress an identifier: no follow-up on the channels named, no items named",
            (400, 401, 403, 413),
        ),
        (
            suppressions,
            "GET",
            get_suppression,
            "The suppression of one identifier",
            (400, 401, 403, 404),
        ),
        (
            suppressions,
            "DELETE",
            delete_suppression,
            "Lift the suppression of one identifier",
            (400, 401, 403, 404),
        ),
    ):
        app.add_api_route(
            path,
            endpoint,
            methods=[method],
            tags=["profiles"],
            summary=summary,
            response_model=schemas.Document,
            responses=_errors(*statuses, 429),
            openapi_extra=admin,
        )
    app.add_api_route(
        "/health", health, methods=["GET"], tags=["operations"], response_model=schemas.Health
    )


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document: the routes, the message models of the tracking API and the
    security schemes (computed once)."""
    if app.openapi_schema is None:
        doc = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        models: list[type[BaseModel]] = [
            *schemas.MESSAGE_MODELS.values(),
            schemas.DecideRequest,
            schemas.FeedbackRequest,
        ]
        _, defs = models_json_schema(
            [(m, "validation") for m in models], ref_template="#/components/schemas/{model}"
        )
        components = doc.setdefault("components", {})
        components.setdefault("schemas", {}).update(defs.get("$defs", {}))
        components["securitySchemes"] = {
            "writeKey": {
                "type": "http",
                "scheme": "basic",
                "description": "write key as user name",
            },
            "decideToken": {"type": "http", "scheme": "bearer"},
            "adminToken": {"type": "http", "scheme": "bearer"},
        }
        app.openapi_schema = doc
    return app.openapi_schema


def create_app(
    settings: Settings,
    engine: Engine,
    *,
    freeze_gc: bool = False,
    extend: Callable[[FastAPI, Settings, Engine], None] | None = None,
) -> FastAPI:
    """The API over ``engine``; of the project's ``settings`` the ``[server]`` part is read
    (keys and tokens, origins, rate and size limits, tracing).

    ``freeze_gc``: once the engine has started, take everything the process holds out of the
    garbage collector's view (``segone.online.writer.freeze_gc``; process-wide, so for a
    process that only serves, as ``segone serve``). ``extend(app, settings, engine)`` adds
    what layers above the API serve from the same app (``segone serve`` mounts the dashboard,
    ``segone.web.mount``, this way: the API does not import the dashboard)."""
    from segone import __version__

    server = settings.server
    limits = Limits(
        int(server.max_message_bytes),
        int(server.max_batch_bytes),
        server.earliest(),
        timedelta(days=server.timestamp_future_days),
    )
    auth = Auth.from_settings(server, settings.root)
    app = SegoneAPI(title="segone", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.api = ApiState(engine, auth, limits, freeze_gc)
    install(app)
    for handled in HANDLED[1:]:  # ApiError has its handler from ``install``
        app.add_exception_handler(handled, _handled)
    app.add_exception_handler(Exception, _unhandled)
    _add_tracking_routes(app, limits)
    _add_routes(app)
    # campaigns read the warehouse (segone.api.campaigns): the project's settings are theirs
    from segone.api.campaigns import router as campaigns_router

    app.state.settings = settings
    app.include_router(campaigns_router)
    if extend is not None:  # e.g. the web dashboard at / (segone.web.mount, by segone serve)
        extend(app, settings, engine)
    app.openapi = partial(openapi_document, app)  # type: ignore[method-assign]
    app.fast = FastPath(HOT, app.state.api)
    app.stack = stack(
        app.dispatch, auth, limits.max_body_bytes, tracing=bool(getattr(server, "tracing", False))
    )
    return app


class SegoneAPI(FastAPI):
    """FastAPI inside segone's middleware stack (``segone.api.middleware.stack``), with the hot
    endpoints (the tracking ones, ``/v1/decide``, ``/v1/feedback``) answered by ``fast`` instead
    of FastAPI's routing and dependency solving, which cost about as much per request as the
    rest of what the server does on those paths. Both paths get the same stack: request id,
    access log, tracing, CORS and body limit. The routes stay declared (for the OpenAPI
    document; with ``fast = None`` they answer, alike). Middleware added with
    ``app.add_middleware`` runs inside FastAPI, so it does not see the hot requests unless
    ``fast`` is None."""

    fast: ASGIApp | None = None
    stack: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.stack is None:
            await self.dispatch(scope, receive, send)
        else:
            await self.stack(scope, receive, send)

    async def dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The innermost layer: the fast path for the hot endpoints, FastAPI for the rest."""
        if (
            self.fast is not None
            and scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] in HOT_PATHS
        ):
            await self.fast(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


class FastPath:
    """ASGI app answering the hot endpoints with the app's own handlers; errors get the same
    envelope as in the app (unhandled ones: ``AccessLog`` around it)."""

    def __init__(self, handlers: Mapping[str, Handler], state: ApiState) -> None:
        if set(handlers) != HOT_PATHS:
            raise ValueError("the fast path serves exactly the hot endpoints")
        self.handlers = dict(handlers)
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope)
        handler = self.handlers[scope["path"]]
        call = Call(self.state, headers, lambda cap: _receive_body(receive, headers, cap), scope)
        try:
            response = await handler(call)
        except HANDLED as exc:
            response = error_response(exc)
        except ClientDisconnect:  # gone before its body was read: nobody to answer
            return
        await response(scope, receive, send)


def _object(body: bytes) -> dict[str, Any]:
    doc = parse_json(body)
    if not isinstance(doc, dict):
        raise ApiError(400, "the body must be a JSON object", "invalid_request")
    return doc


async def _receive_body(receive: Any, headers: Headers, cap: int) -> bytes:
    """The body from the raw ASGI channel, refusing (413) more than ``cap`` bytes before
    holding them; past the cap the rest is read and dropped up to ``DRAIN_BYTES`` (so the
    client reads the 413 rather than a reset connection)."""
    length = headers.get("content-length")
    too_big = length is not None and length.isdigit() and int(length) > cap
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > cap:
            too_big = True
        if not too_big:
            chunks.append(chunk)
        if not message.get("more_body", False) or (too_big and size > DRAIN_BYTES):
            break
    if too_big:
        raise too_large(cap)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)

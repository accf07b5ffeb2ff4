"""The FastAPI application: Segment-compatible tracking endpoints, decisions, profiles, health.

``create_app(settings, engine)`` wires the routes to an ``Engine`` (segone.online.engine), whose
``start``/``stop`` follow the app's lifespan. Handlers only authenticate, parse and hand over:
every tracking answer is sent after the engine has committed the messages.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

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
    log,
)
from segone.api.logs import AccessLog
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
from segone.decisions.errors import DecisionError
from segone.online.engine import Engine, NotFound
from segone.online.store import OnlineStoreError
from segone.online.writer import freeze_gc as freeze

# decide/feedback bodies are small JSON documents
MAX_JSON_BYTES = 64 * 1024
# past the cap the rest of a body is read and dropped (so the client reads the 413 rather than a
# reset connection), up to this much; beyond it the connection is simply closed
DRAIN_BYTES = 8 * 1024 * 1024

DESCRIPTION = """\
Real-time segone: Segment-compatible event ingestion (point any Segment or RudderStack SDK at
this server), live profiles, and next-best-action decisions.

Every error has one shape: `{"error": {"status", "code", "message", "details"}}`.
"""


def _json(doc: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(doc), status_code=status, media_type="application/json")


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": ErrorEnvelope} for s in statuses}


async def read_body(request: Request, cap: int) -> bytes:
    """The raw request body, refusing (413) more than ``cap`` bytes before holding them."""
    return await _receive_body(request.receive, request.headers, cap)


HANDLED = (ApiError, DecisionError, NotFound, OnlineStoreError)


def error_response(exc: Exception) -> Response:
    """The error envelope for an exception of ``HANDLED`` (what handlers raise on purpose; any
    other exception is a bug, answered 500 by the app's catch-all)."""
    if isinstance(exc, ApiError):
        return api_error_response(exc)
    if isinstance(exc, DecisionError):
        return envelope(400, "invalid_request", str(exc))
    if isinstance(exc, NotFound):
        return envelope(404, "not_found", "nothing is known by that identifier")
    if isinstance(exc, OnlineStoreError):
        log.error("online store unavailable: %s", type(exc).__name__)
        return envelope(503, "unavailable", "the online store is unavailable; retry later")
    raise TypeError(f"not an error handlers raise on purpose: {type(exc).__name__}") from exc


async def _handled(request: Request, exc: Exception) -> Response:
    return error_response(exc)


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


def create_app(settings: Settings, engine: Engine, *, freeze_gc: bool = False) -> FastAPI:
    """The API over ``engine``; of the project's ``settings`` the ``[server]`` part is read
    (keys and tokens, size limits).

    ``freeze_gc``: once the engine has started, take everything the process holds out of the
    garbage collector's view (``segone.online.writer.freeze_gc``; process-wide, so for a
    process that only serves, as ``segone serve``)."""
    server = settings.server
    limits = Limits(
        int(server.max_message_bytes),
        int(server.max_batch_bytes),
        server.earliest(),
        timedelta(days=server.timestamp_future_days),
    )
    auth = Auth.from_settings(server)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await engine.start()
        if freeze_gc:
            freeze()
        try:
            yield
        finally:
            await engine.stop()

    from segone import __version__

    app = SegoneAPI(
        title="segone",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    install(app)
    for handled in HANDLED[1:]:  # ApiError has its handler from ``install``
        app.add_exception_handler(handled, _handled)

    async def ingest(endpoint: str, headers: Mapping[str, str], read: Reader) -> Response:
        """One tracking request."""
        body = await read(limits.max_body_bytes)
        header_key = basic_user(headers.get("authorization"))
        if header_key is not None:
            auth.require_write_key(header_key)
            doc = decode(body, headers, limits)
        else:
            try:
                doc = decode(body, headers, limits)
            except ApiError:
                # unreadable, so no writeKey in it: an unauthenticated caller learns nothing more
                doc = None
            auth.require_write_key(body_write_key(doc))
        parsed = parse_doc(doc, endpoint, limits)
        now = datetime.now(UTC)
        result = await engine.ingest(
            parsed.messages,
            [
                {
                    "reason": f"{r.code}: {r.message}",
                    "message": _storable(r.raw),
                    "received_at": now,
                }
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

    # the hot endpoints: each a handler of (headers, read), answered by ``FastPath`` in front
    # of FastAPI and, for the OpenAPI document (and without the fast path), by the app's routes
    # through ``_route``
    hot: dict[str, Handler] = {}

    def add_tracking_route(endpoint: str) -> None:
        async def handler(headers: Mapping[str, str], read: Reader) -> Response:
            return await ingest(endpoint, headers, read)

        hot[f"/v1/{endpoint}"] = handler

        model = schemas.MESSAGE_MODELS[endpoint]
        what = "a batch of messages" if endpoint == "batch" else f"one {endpoint} message"
        app.add_api_route(
            f"/v1/{endpoint}",
            _route(handler),
            methods=["POST"],
            name=endpoint,
            summary=f"Send {what} (Segment tracking API)",
            description=(
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
            ),
            tags=["tracking"],
            response_model=schemas.IngestResponse,
            responses=_errors(400, 401, 413, 415),
            openapi_extra={
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": f"#/components/schemas/{model.__name__}"}
                        }
                    },
                },
                "security": [{"writeKey": []}],
            },
        )

    for endpoint in (*TYPES, "batch"):
        add_tracking_route(endpoint)

    async def json_object(request: Request) -> dict[str, Any]:
        return _object(await read_body(request, MAX_JSON_BYTES))

    def bearer_doc(model: type[Any], scheme: list[str]) -> dict[str, Any]:
        return {
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}
                    }
                },
            },
            "security": [{s: []} for s in scheme],
        }

    async def decide(headers: Mapping[str, str], read: Reader) -> Response:
        auth.require_decide(headers.get("authorization"))
        body = _object(await read(MAX_JSON_BYTES))
        _required(body, "identifier")
        return _json(await engine.decide(body))

    hot["/v1/decide"] = decide
    app.add_api_route(
        "/v1/decide",
        _route(decide),
        methods=["POST"],
        name="decide",
        tags=["decisions"],
        summary="Rank items/offers for one person and choose the follow-up channel",
        response_model=schemas.Document,
        responses=_errors(400, 401, 403, 413, 422),
        openapi_extra=bearer_doc(schemas.DecideRequest, ["decideToken", "adminToken"]),
    )

    async def feedback(headers: Mapping[str, str], read: Reader) -> Response:
        auth.require_decide(headers.get("authorization"))
        body = _object(await read(MAX_JSON_BYTES))
        _required(body, "decision_id", "kind")
        return _json(await engine.feedback(body))

    hot["/v1/feedback"] = feedback
    app.add_api_route(
        "/v1/feedback",
        _route(feedback),
        methods=["POST"],
        name="feedback",
        tags=["decisions"],
        summary="Report an impression, click or conversion of a decision",
        response_model=schemas.Document,
        responses=_errors(400, 401, 403, 404, 413, 422),
        openapi_extra=bearer_doc(schemas.FeedbackRequest, ["decideToken", "adminToken"]),
    )

    profile_doc: dict[str, Any] = {"security": [{"adminToken": []}]}

    @app.get(
        "/v1/profiles/{identifier:path}",
        tags=["profiles"],
        summary="One person's live profile, by any identifier (e.g. user_id:u-1001)",
        response_model=schemas.Document,
        responses=_errors(401, 403, 404),
        openapi_extra=profile_doc,
    )
    async def get_profile(identifier: str, request: Request) -> Response:
        auth.require_admin(request.headers.get("authorization"))
        doc = await engine.profile(identifier)
        if doc is None:
            raise ApiError(404, "no profile has this identifier", "profile_not_found")
        return _json(doc)

    @app.delete(
        "/v1/profiles/{identifier:path}",
        tags=["profiles"],
        summary="Erase the person with this identifier from the online store and the warehouse",
        response_model=schemas.Document,
        responses=_errors(401, 403, 404),
        openapi_extra=profile_doc,
    )
    async def delete_profile(identifier: str, request: Request) -> Response:
        auth.require_admin(request.headers.get("authorization"))
        doc = await engine.erase(identifier)
        if doc is None:
            raise ApiError(404, "no profile has this identifier", "profile_not_found")
        return _json(doc)

    @app.get(
        "/v1/erasures",
        tags=["profiles"],
        summary="The audit of every erasure: when, through which route, rows removed (no PII)",
        response_model=schemas.Document,
        responses=_errors(401, 403),
        openapi_extra=profile_doc,
    )
    async def get_erasures(request: Request) -> Response:
        auth.require_admin(request.headers.get("authorization"))
        return _json({"erasures": await engine.erasures()})

    @app.put(
        "/v1/suppressions/{identifier:path}",
        tags=["profiles"],
        summary="Suppress an identifier: no follow-up on the channels named, no items named",
        response_model=schemas.Document,
        responses=_errors(400, 401, 403, 413),
        openapi_extra=profile_doc,
    )
    async def put_suppression(identifier: str, request: Request) -> Response:
        auth.require_admin(request.headers.get("authorization"))
        body = await json_object(request)
        return _json(await engine.suppress(identifier, body))

    @app.get(
        "/v1/suppressions/{identifier:path}",
        tags=["profiles"],
        summary="The suppression of one identifier",
        response_model=schemas.Document,
        responses=_errors(400, 401, 403, 404),
        openapi_extra=profile_doc,
    )
    async def get_suppression(identifier: str, request: Request) -> Response:
        auth.require_admin(request.headers.get("authorization"))
        doc = await engine.suppression(identifier)
        if doc is None:
            raise ApiError(404, "this identifier is not suppressed", "suppression_not_found")
        return _json(doc)

    @app.delete(
        "/v1/suppressions/{identifier:path}",
        tags=["profiles"],
        summary="Lift the suppression of one identifier",
        response_model=schemas.Document,
        responses=_errors(400, 401, 403, 404),
        openapi_extra=profile_doc,
    )
    async def delete_suppression(identifier: str, request: Request) -> Response:
        auth.require_admin(request.headers.get("authorization"))
        if not await engine.unsuppress(identifier):
            raise ApiError(404, "this identifier is not suppressed", "suppression_not_found")
        return _json({"lifted": True})

    @app.get("/health", tags=["operations"], response_model=schemas.Health)
    async def health() -> Response:
        return _json({"status": "ok", "version": __version__})

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            models: list[type[BaseModel]] = [
                *schemas.MESSAGE_MODELS.values(),
                schemas.DecideRequest,
                schemas.FeedbackRequest,
            ]
            _, defs = models_json_schema(
                [(m, "validation") for m in models],
                ref_template="#/components/schemas/{model}",
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

    app.openapi = openapi  # type: ignore[method-assign]
    from segone.web import mount as mount_dashboard  # the web dashboard at /

    mount_dashboard(app, project_dir=None, settings=settings, engine=engine)
    app.add_middleware(AccessLog)  # the outermost layer of FastAPI's stack
    app.fast = AccessLog(FastPath(hot))
    return app


Reader = Callable[[int], Awaitable[bytes]]  # the request body, refused (413) past a cap
Handler = Callable[[Mapping[str, str], Reader], Awaitable[Response]]


def _route(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A hot endpoint's handler as a FastAPI route."""

    async def route(request: Request) -> Response:
        return await handler(request.headers, lambda cap: read_body(request, cap))

    return route


class SegoneAPI(FastAPI):
    """FastAPI, with the hot endpoints (``POST /v1/{identify,track,page,screen,group,alias,
    batch}``, ``/v1/decide``, ``/v1/feedback``) answered by ``fast`` before its own middleware
    stack, routing and dependency solving, which cost about as much per request as the rest of
    what the server does on those paths. The routes stay declared (for the OpenAPI document; with
    ``fast = None`` they answer, alike). FastAPI's own middleware (its OpenTelemetry
    instrumentation included) does not see the hot requests."""

    fast: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.fast is not None
            and scope["type"] == "http"
            and scope["path"] in HOT_PATHS
            and scope["method"] == "POST"
        ):
            await self.fast(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


HOT_PATHS = frozenset({*(f"/v1/{e}" for e in (*TYPES, "batch")), "/v1/decide", "/v1/feedback"})


class FastPath:
    """ASGI app answering the hot endpoints with the app's own handlers; errors get the same
    envelope as in the app (unhandled ones: ``AccessLog`` around it)."""

    def __init__(self, handlers: Mapping[str, Handler]) -> None:
        if set(handlers) != HOT_PATHS:
            raise ValueError("the fast path serves exactly the hot endpoints")
        self.handlers = dict(handlers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope)
        handler = self.handlers[scope["path"]]
        try:
            response = await handler(headers, lambda cap: _receive_body(receive, headers, cap))
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

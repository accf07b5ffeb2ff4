"""The one middleware stack every request goes through, fast path and FastAPI routes alike.

From the outside in::

    AccessLog   request id, the access log (redacted), the catch-all 500   (segone.api.logs)
    Tracing     an OpenTelemetry span per request ([server] tracing; optional)
    Cors        browser origins: preflights answered, Access-Control-* on answers
    BodyLimit   a request body over the server's cap is a 413 before any handler reads it
    dispatch    the hot endpoints to the fast path, everything else to FastAPI

Each layer is a plain ASGI callable that does nothing more than a header scan when it has
nothing to do, so the hot path keeps its speed (``bench/serve_bench.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from segone.api.auth import Auth, foreign_origin
from segone.api.errors import ApiError, envelope
from segone.api.logs import redact_path

log = logging.getLogger("segone.api")

# the scope key where Cors leaves the origin of a cross-site request for the handlers' per-key
# check (absent: not from another site's page)
ORIGIN_KEY = "segone.origin"
ALLOW_METHODS = b"GET, POST, PUT, DELETE, OPTIONS"
# what analytics.js and the other browser SDKs send, and what a page may read of an answer
ALLOW_HEADERS = b"Authorization, Content-Type, Content-Encoding, X-Retry-Count, X-Request-Id"
EXPOSE_HEADERS = b"Retry-After, X-Request-Id"
MAX_AGE = b"600"
# past the cap the rest of a body is read and dropped (so the client reads the 413 rather than a
# reset connection), up to this much; beyond it the connection is simply closed
DRAIN_BYTES = 8 * 1024 * 1024


class Cors:
    """CORS for the origins allowed by ``auth`` (``[server] cors_origins`` and each key's).

    A preflight (``OPTIONS`` with ``Access-Control-Request-Method``) from an allowed origin is
    answered 204 with the ``Access-Control-Allow-*`` headers; from another origin, 403. An answer
    to an allowed origin carries ``Access-Control-Allow-Origin`` (that origin, never ``*``) and
    ``Access-Control-Allow-Credentials: true``, so a page may send its cookies (analytics.js's
    ``ajs_anonymous_id``, read by the tracking endpoints). Requests without ``Origin``, or from
    the server's own pages, pass untouched."""

    def __init__(self, app: ASGIApp, auth: Auth) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin = host = None
        preflight = False
        for k, v in scope["headers"]:
            if k == b"origin":
                origin = v.decode("latin-1")
            elif k == b"host":
                host = v.decode("latin-1")
            elif k == b"access-control-request-method":
                preflight = True
        origin = foreign_origin(origin, host)
        if origin is None:
            await self.app(scope, receive, send)
            return
        scope[ORIGIN_KEY] = origin
        allowed = self.auth.allows_origin(origin)
        if preflight and scope["method"] == "OPTIONS":
            if not allowed:
                response = envelope(
                    403,
                    "origin_not_allowed",
                    "this origin may not call the API (see [server] cors_origins and "
                    "`segone keys create --origin`)",
                )
                await response(scope, receive, send)
                return
            headers = [
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"access-control-allow-credentials", b"true"),
                (b"access-control-allow-methods", ALLOW_METHODS),
                (b"access-control-allow-headers", ALLOW_HEADERS),
                (b"access-control-max-age", MAX_AGE),
                (b"vary", b"Origin"),
                (b"content-length", b"0"),
            ]
            await send({"type": "http.response.start", "status": 204, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        if not allowed:
            # no Access-Control-* headers: the browser keeps the answer from the page; the
            # handler refuses the key for this origin (403)
            await self.app(scope, receive, send)
            return
        extra = [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-allow-credentials", b"true"),
            (b"access-control-expose-headers", EXPOSE_HEADERS),
            (b"vary", b"Origin"),
        ]

        async def send_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        await self.app(scope, receive, send_cors)


def too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        f"the request body is larger than {limit} bytes (Segment's batch limit)",
        "payload_too_large",
    )


class BodyLimit:
    """No request body over ``cap`` bytes reaches a handler, on any route: one announced larger
    (``Content-Length``) is answered 413 at once (after draining it, so that the client reads
    the answer); a body without a length is counted as it is read and refused past the cap.
    Handlers apply their own, smaller caps (``segone.api.app``)."""

    def __init__(self, app: ASGIApp, cap: int) -> None:
        self.app = app
        self.cap = cap

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = None
        for k, v in scope["headers"]:
            if k == b"content-length":
                length = v
                break
        if length is not None:
            if length.isdigit() and int(length) > self.cap:
                await drain(receive)
                await _error_response(too_large(self.cap), scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        seen = 0
        cap = self.cap

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > cap:
                raise too_large(cap)
            return message

        await self.app(scope, counted, send)


async def drain(receive: Receive) -> None:
    """Read and drop a request body, up to ``DRAIN_BYTES``."""
    size = 0
    while size <= DRAIN_BYTES:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def _error_response(exc: ApiError, scope: Scope, receive: Receive, send: Send) -> None:
    response = envelope(exc.status, exc.code, exc.message, exc.details, exc.headers)
    await response(scope, receive, send)


class Tracing:
    """An OpenTelemetry span per request (``[server] tracing = true``), named by the redacted
    route (``POST /v1/track``) with the answer's status. Needs ``opentelemetry-api``; spans go
    wherever the process's tracer provider sends them (configure the SDK and an exporter as
    OpenTelemetry documents)."""

    def __init__(self, app: ASGIApp) -> None:
        try:
            from opentelemetry import trace
        except ImportError:  # pragma: no cover - depends on the environment
            from segone.exceptions import ConfigError

            raise ConfigError(
                "[server] tracing = true needs OpenTelemetry: pip install opentelemetry-api "
                "(and opentelemetry-sdk with an exporter to send the spans somewhere)"
            ) from None
        self.app = app
        # a proxy until the process configures a tracer provider, then that provider's tracer
        self.tracer = trace.get_tracer("segone.api")
        self.kind = trace.SpanKind.SERVER

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = redact_path(scope["path"])
        name = f"{scope['method']} {route}"
        with self.tracer.start_as_current_span(name, kind=self.kind) as span:
            span.set_attribute("http.request.method", scope["method"])
            span.set_attribute("http.route", route)
            rid = (scope.get("state") or {}).get("request_id")
            if rid:
                span.set_attribute("segone.request_id", rid)

            async def send_traced(message: Message) -> None:
                if message["type"] == "http.response.start":
                    span.set_attribute("http.response.status_code", message["status"])
                await send(message)

            await self.app(scope, receive, send_traced)


def stack(
    inner: ASGIApp, auth: Auth, body_cap: int, *, tracing: bool = False
) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """``inner`` (the dispatch to the fast path or FastAPI) inside the shared layers."""
    from segone.api.logs import AccessLog

    app: Any = BodyLimit(inner, body_cap)
    app = Cors(app, auth)
    if tracing:
        app = Tracing(app)
    return AccessLog(app)

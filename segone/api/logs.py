"""The access log (with no PII in it), request ids and the catch-all for unhandled errors, as
the outermost ASGI layer of every request (fast path and FastAPI routes alike).

A line per request: ``POST /v1/track 200 1.4ms rid=5f0c9a1e7b2d4c6a``. Client addresses are not
logged (a browser's address is personal data); identifiers in ``/v1/profiles/...`` paths, any
query string, and any path that is not one of the API's own are replaced, so nothing a client
sent is written. The request id is the client's ``X-Request-Id`` when it is a short token of
letters, digits and ``-_.`` (anything else could carry data into the log), else a fresh one; it
is answered in ``X-Request-Id`` and kept in ``scope["state"]["request_id"]``.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from segone.api.errors import internal_error, log_unhandled

access_log = logging.getLogger("segone.api.access")

PROFILES_PREFIX = "/v1/profiles/"
SUPPRESSIONS_PREFIX = "/v1/suppressions/"
KNOWN_PATHS = frozenset(
    {
        "/health",
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
        "/openapi.json",
        "/v1/decide",
        "/v1/feedback",
        "/v1/erasures",
        *(f"/v1/{t}" for t in ("identify", "track", "page", "screen", "group", "alias", "batch")),
        # analytics.js's short names of the same endpoints
        *(f"/v1/{t}" for t in "tpigasb"),
    }
)
REQUEST_ID = b"x-request-id"
_ID_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def request_id(headers: list[tuple[bytes, bytes]]) -> bytes:
    """The client's request id when it is a safe token (at most 64 of ``[A-Za-z0-9-_.]``),
    else a fresh random one."""
    for k, v in headers:
        if k == REQUEST_ID:
            if 0 < len(v) <= 64 and _ID_CHARS.issuperset(v):
                return v
            break
    return os.urandom(8).hex().encode()


def redact_path(path: str, query: bytes | str = b"") -> str:
    """The path as logged: API paths as they are, an identifier or query string as placeholders."""
    if path.startswith(PROFILES_PREFIX):
        shown = PROFILES_PREFIX + "{identifier}"
    elif path.startswith(SUPPRESSIONS_PREFIX):
        shown = SUPPRESSIONS_PREFIX + "{identifier}"
    elif path in KNOWN_PATHS:
        shown = path
    else:
        shown = "{other}"
    return shown + "?{query}" if query else shown


LOGGING_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "stream": "ext://sys.stderr",
        },
    },
    "loggers": {
        "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "uvicorn.error": {"level": "INFO"},
        # uvicorn's own access log prints client addresses and raw paths: ours replaces it
        "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        "segone": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
    },
}


class AccessLog:
    """ASGI middleware: gives each request its id, logs it (redacted) and answers unhandled
    errors with a 500 in the envelope, logging the traceback without the exception's message
    (unless a handler inside already answered, and logged, the error)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0
        rid = request_id(scope["headers"])
        state = scope.get("state")
        if state is None:
            scope["state"] = {"request_id": rid.decode()}
        else:
            state["request_id"] = rid.decode()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (REQUEST_ID, rid)]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except Exception as exc:
            if status == 0:  # nothing sent yet: the client gets the envelope
                path = redact_path(scope["path"], scope.get("query_string", b""))
                log_unhandled(exc, scope["method"], path)
                await internal_error()(scope, receive, send_status)
            # else: answered by the app's own catch-all (``segone.api.app``), which logged it
        finally:
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "%s %s %d %.1fms rid=%s",
                    scope["method"],
                    redact_path(scope["path"], scope.get("query_string", b"")),
                    status,
                    (time.perf_counter() - start) * 1000,
                    rid.decode(),
                )

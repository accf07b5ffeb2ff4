"""The access log (with no PII in it) and the catch-all for unhandled errors, as one ASGI layer.

A line per request: ``POST /v1/track 200 1.4ms``. Client addresses are not logged (a browser's
address is personal data); identifiers in ``/v1/profiles/...`` paths, any query string, and any
path that is not one of the API's own are replaced, so nothing a client sent is written.
"""

from __future__ import annotations

import logging
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
    }
)


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
    """ASGI middleware: logs each request (redacted) and answers unhandled errors with a 500 in
    the envelope, logging the traceback without the exception's message."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except Exception as exc:
            path = redact_path(scope["path"], scope.get("query_string", b""))
            log_unhandled(exc, scope["method"], path)
            if status == 0:  # nothing sent yet: the client gets the envelope
                status = 500
                await internal_error()(scope, receive, send)
        finally:
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "%s %s %d %.1fms",
                    scope["method"],
                    redact_path(scope["path"], scope.get("query_string", b"")),
                    status,
                    (time.perf_counter() - start) * 1000,
                )

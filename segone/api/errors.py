"""The one JSON error envelope of the HTTP API, for every error the server answers with.

::

    {"error": {"status": 400, "code": "invalid_message", "message": "...", "details": [...]}}

``code`` is snake_case and stable (clients branch on it), ``message`` is a sentence for people.
Messages and details name fields and message indexes, never the values sent (they may be PII).
FastAPI's own 404/405/422 and unhandled exceptions (500) are rewritten into the same shape.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

log = logging.getLogger("segone.api")

# default codes for statuses raised without one (FastAPI's own errors included)
CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    411: "length_required",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}


class ErrorDetail(BaseModel):
    """One problem: where it is (message index in a batch, field name) and what is wrong."""

    code: str = Field(examples=["missing_field"])
    message: str = Field(examples=["message 3: userId or anonymousId is required"])
    index: int | None = Field(default=None, description="index of the message in the batch")
    field: str | None = Field(default=None, examples=["userId"])


class ErrorBody(BaseModel):
    status: int = Field(examples=[400])
    code: str = Field(examples=["invalid_message"])
    message: str = Field(examples=["the message is not valid"])
    details: list[ErrorDetail] = Field(default_factory=list)


class ErrorEnvelope(BaseModel):
    """The body of every error response."""

    error: ErrorBody


class ApiError(Exception):
    """An error answered to the client in the envelope; raise it anywhere in a request."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        details: Sequence[dict[str, Any]] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or CODES.get(status, "error")
        self.message = message
        self.details = list(details)
        self.headers = headers


def detail(
    code: str, message: str, index: int | None = None, field: str | None = None
) -> dict[str, Any]:
    """One entry of ``details`` (and of ``rejected`` in a 200 ingest answer)."""
    return {"code": code, "message": message, "index": index, "field": field}


def envelope(
    status: int,
    code: str,
    message: str,
    details: Sequence[dict[str, Any]] = (),
    headers: dict[str, str] | None = None,
) -> Response:
    body = {"error": {"status": status, "code": code, "message": message, "details": details}}
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def api_error_response(exc: ApiError) -> Response:
    return envelope(exc.status, exc.code, exc.message, exc.details, exc.headers)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return api_error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    if status == 404:
        message = "no such endpoint; see /docs for the API"
    elif status == 405:
        message = f"method {request.method} is not allowed on this endpoint"
    elif isinstance(exc.detail, str) and exc.detail != _phrase(status):
        message = exc.detail
    else:
        message = _phrase(status)
    headers = dict(exc.headers) if exc.headers else None
    return envelope(status, CODES.get(status, "error"), message, headers=headers)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    details = []
    for err in exc.errors():
        # loc and msg only: pydantic's "input" and "ctx" would echo what was sent
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
        field = ".".join(loc) or None
        details.append(
            detail(str(err.get("type", "invalid")), str(err.get("msg", "")), None, field)
        )
    return envelope(422, "validation_error", "the request is not valid", details)


def install(app: FastAPI) -> None:
    """Route every error of ``app`` through the envelope (unhandled ones: see ``AccessLog``)."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)


def log_unhandled(exc: BaseException, method: str, path: str) -> None:
    """Log an unhandled exception without its message (which could quote a trait value)."""
    frames = "".join(traceback.format_tb(exc.__traceback__))
    log.error(
        "unhandled %s in %s %s (message withheld: may hold PII)\n%s",
        type(exc).__name__,
        method,
        path,
        frames,
    )


def internal_error() -> Response:
    return envelope(500, "internal_error", "internal server error (logged on the server)")

"""Who may call what (scopes), from which web page (origins), how often (rate limits).

- Tracking endpoints take a key with the ``ingest`` scope (a write key): the HTTP Basic user
  name (password empty, as Segment's SDKs send it) or ``writeKey`` in the body. A key without
  that scope is not a write key there (401), whatever else it may do.
- Every other route takes ``Authorization: Bearer`` with a key holding the route's scope
  (``segone.api.app.ROUTE_SCOPES``): ``decide`` for ``/v1/decide`` and ``/v1/feedback``,
  ``read`` for reading profiles, suppressions and erasures, ``erase`` for erasing a person,
  ``admin`` for changing suppressions. A known key without the scope is a 403, an unknown one
  a 401.
- A request from a web page (an ``Origin`` header naming another site than the server's) is
  refused (403) unless its key allows that origin, or ``[server] cors_origins`` allows it for
  every key. Browsers enforce the same list through CORS (``segone.api.middleware.Cors``);
  this check holds for clients that ignore CORS too.
- Each key has a token bucket (``[server] rate_limit_per_second`` and ``rate_limit_burst``, or
  the key's own): past it, a 429 with ``Retry-After``.

Keys are looked up by the SHA-256 of what was presented (``segone.api.keys``), so the time taken
says nothing about how close a guess was. No key, no access: with no write key, ingestion is
refused.
"""

from __future__ import annotations

import base64
import binascii
import math
import time
from dataclasses import dataclass, field
from typing import Any

from segone.api.errors import ApiError
from segone.api.keys import Key, KeyRing

BASIC_CHALLENGE = {"WWW-Authenticate": 'Basic realm="segone"'}
BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="segone"'}

# what each scope's 401 asks for
_WANTED = {
    "decide": "a decide token or an admin token",
    "read": "an admin token",
    "erase": "an admin token",
    "admin": "an admin token",
}


def basic_user(authorization: str | None) -> str | None:
    """The user name of an ``Authorization: Basic`` header; None when there is no such header."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return ""  # a Basic header that is not one: present, and matches no key
    return decoded.partition(":")[0]


def bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def foreign_origin(origin: str | None, host: str | None) -> str | None:
    """``origin`` when it names another site than the server (``host``); None for a request
    that is not from a web page or is from the server's own pages."""
    if not origin:
        return None
    _, sep, netloc = origin.partition("://")
    if sep and host is not None and netloc == host:
        return None
    return origin


@dataclass
class RateLimiter:
    """A token bucket per key: ``rate`` requests a second on average, ``burst`` at once.

    A key's own rate (``segone keys create --rate``) wins over the server's; a rate of 0 (the
    default) means no limit. The buckets live in the server process, so the limit holds per
    server (replicas each apply it)."""

    rate: float = 0.0
    burst: float = 0.0
    _buckets: dict[str, list[float]] = field(default_factory=dict)

    def take(self, key: Key) -> None:
        rate = key.rate_per_second if key.rate_per_second is not None else self.rate
        if not rate:
            return
        burst = key.burst if key.burst is not None else (self.burst or max(1.0, rate))
        now = time.monotonic()
        bucket = self._buckets.get(key.id)
        if bucket is None:
            bucket = self._buckets[key.id] = [burst, now]
        tokens = min(burst, bucket[0] + (now - bucket[1]) * rate)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return
        bucket[0] = tokens
        wait = max(1, math.ceil((1.0 - tokens) / rate))
        raise ApiError(
            429,
            f"this key is over its rate limit ({rate:g} requests/s); retry after {wait} s",
            "rate_limited",
            headers={"Retry-After": str(wait)},
        )


@dataclass
class Auth:
    """The server's keys, allowed origins and rate limits, checked per request."""

    ring: KeyRing
    cors_origins: frozenset[str] = frozenset()
    limiter: RateLimiter = field(default_factory=RateLimiter)

    @classmethod
    def from_settings(cls, server: Any, root: Any = None) -> Auth:
        """From the ``[server]`` settings (keys, ``keys_file``, ``cors_origins``, rate limits)."""
        return cls(
            KeyRing.from_settings(server, root),
            frozenset(getattr(server, "cors_origins", ())),
            RateLimiter(
                float(getattr(server, "rate_limit_per_second", 0.0)),
                float(getattr(server, "rate_limit_burst", 0.0)),
            ),
        )

    def allows_origin(self, origin: str) -> bool:
        """Whether some key (or every key) may be used from ``origin`` (for preflights)."""
        if origin in self.cors_origins or "*" in self.cors_origins:
            return True
        allowed = self.ring.origins()
        return origin in allowed or "*" in allowed

    def _admit(self, key: Key, origin: str | None) -> Key:
        if (
            origin is not None
            and origin not in self.cors_origins
            and "*" not in self.cors_origins
            and not key.allows_origin(origin)
        ):
            raise ApiError(
                403,
                "this key may not be used from this web page's origin (allow it with "
                "`segone keys create --origin` or [server] cors_origins)",
                "origin_not_allowed",
            )
        self.limiter.take(key)
        return key

    def write_key(self, candidate: str | None, origin: str | None = None) -> Key:
        """The key of a tracking request (from the Basic user name or the body); else 401."""
        if candidate is None and not self.ring.any_with("ingest"):
            raise ApiError(
                401,
                "this server accepts no events: no write keys are configured "
                "([server] write_keys, SEGONE_WRITE_KEYS or `segone keys create`)",
                "unauthorized",
                headers=BASIC_CHALLENGE,
            )
        if candidate is None:
            raise ApiError(
                401,
                "a write key is required: HTTP Basic auth with the write key as user name, "
                "or writeKey in the body",
                "unauthorized",
                headers=BASIC_CHALLENGE,
            )
        key = self.ring.lookup(candidate)
        if key is None or "ingest" not in key.scopes:
            raise ApiError(
                401, "the write key is not valid", "unauthorized", headers=BASIC_CHALLENGE
            )
        return self._admit(key, origin)

    def token(self, authorization: str | None, scope: str, origin: str | None = None) -> Key:
        """The key of a Bearer request, which must hold ``scope``: 401 without a valid one,
        403 when the key is valid but may not do this."""
        token = bearer(authorization)
        if token is None:
            raise ApiError(
                401,
                f"this endpoint needs Authorization: Bearer with {_WANTED.get(scope, scope)}",
                "unauthorized",
                headers=BEARER_CHALLENGE,
            )
        key = self.ring.lookup(token)
        if key is None:
            raise ApiError(401, "the token is not valid", "unauthorized", headers=BEARER_CHALLENGE)
        if scope not in key.scopes:
            if key.scopes == {"ingest"}:
                raise ApiError(403, "a write key can only send events; this endpoint needs a token")
            raise ApiError(
                403,
                f"this endpoint needs a key with the {scope!r} scope "
                f"({_WANTED.get(scope, scope)}); this one has {', '.join(sorted(key.scopes))}",
            )
        return self._admit(key, origin)

"""Who may call what: write keys ingest, decide tokens decide, admin tokens do everything else.

- Tracking endpoints take a write key: the HTTP Basic user name (password empty, as Segment's
  SDKs send it) or ``writeKey`` in the body. Nothing else is a write key (not an admin token).
- ``/v1/decide`` and ``/v1/feedback`` take ``Authorization: Bearer`` with a decide or admin token.
- ``/v1/profiles/{identifier}`` takes ``Authorization: Bearer`` with an admin token.

Every comparison is constant-time and runs over all configured keys, so the time taken says
nothing about how close a guess was or which key matched. No key, no access: with no write keys
configured, ingestion is refused.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from segone.api.errors import ApiError

BASIC_CHALLENGE = {"WWW-Authenticate": 'Basic realm="segone"'}
BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="segone"'}


def _keys(values: Iterable[str]) -> tuple[bytes, ...]:
    return tuple(v.encode() for v in values if v)


def _matches(candidate: str | None, keys: tuple[bytes, ...]) -> bool:
    if not candidate:
        return False
    c = candidate.encode()
    found = False
    for k in keys:  # no early exit: every key is compared every time
        found |= hmac.compare_digest(c, k)
    return found


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


@dataclass(frozen=True)
class Auth:
    write_keys: tuple[bytes, ...]
    admin_tokens: tuple[bytes, ...]
    decide_tokens: tuple[bytes, ...]

    @classmethod
    def from_settings(cls, server: Any) -> Auth:
        """From the ``[server]`` settings (``write_keys``, ``admin_tokens``, ``decide_tokens``)."""
        return cls(
            _keys(server.write_keys), _keys(server.admin_tokens), _keys(server.decide_tokens)
        )

    def require_write_key(self, key: str | None) -> None:
        """Accept ``key`` (from the Basic user name or the body) if it is a write key; else 401."""
        if not self.write_keys:
            raise ApiError(
                401,
                "this server accepts no events: no write keys are configured "
                "([server] write_keys or SEGONE_WRITE_KEYS)",
                "unauthorized",
                headers=BASIC_CHALLENGE,
            )
        if key is None:
            raise ApiError(
                401,
                "a write key is required: HTTP Basic auth with the write key as user name, "
                "or writeKey in the body",
                "unauthorized",
                headers=BASIC_CHALLENGE,
            )
        if not _matches(key, self.write_keys):
            raise ApiError(
                401, "the write key is not valid", "unauthorized", headers=BASIC_CHALLENGE
            )

    def _token(self, authorization: str | None, allowed: str) -> str:
        token = bearer(authorization)
        if token is None:
            raise ApiError(
                401,
                f"this endpoint needs Authorization: Bearer with {allowed}",
                "unauthorized",
                headers=BEARER_CHALLENGE,
            )
        return token

    def require_admin(self, authorization: str | None) -> None:
        """Admin endpoints (profiles): an admin token; a decide token or write key is a 403."""
        token = self._token(authorization, "an admin token")
        if _matches(token, self.admin_tokens):
            return
        if _matches(token, self.decide_tokens) or _matches(token, self.write_keys):
            raise ApiError(
                403, "this endpoint needs an admin token, not a decide token or write key"
            )
        raise ApiError(401, "the token is not valid", "unauthorized", headers=BEARER_CHALLENGE)

    def require_decide(self, authorization: str | None) -> None:
        """Decision endpoints: a decide or admin token; a write key is a 403."""
        token = self._token(authorization, "a decide token or an admin token")
        if _matches(token, self.decide_tokens) | _matches(token, self.admin_tokens):
            return
        if _matches(token, self.write_keys):
            raise ApiError(403, "a write key can only send events; this endpoint needs a token")
        raise ApiError(401, "the token is not valid", "unauthorized", headers=BEARER_CHALLENGE)

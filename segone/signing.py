"""Standard Webhooks signatures (https://www.standardwebhooks.com), for every webhook segone sends.

A signed request carries three headers::

    webhook-id:        msg_...          the same on every retry of a message (receivers de-dupe)
    webhook-timestamp: 1614265330       unix seconds when this attempt was signed
    webhook-signature: v1,<base64>      HMAC-SHA256(key, f"{id}.{timestamp}.{body}")

The key is the secret's bytes: a ``whsec_<base64>`` secret (the spec's format, what the
reference libraries print) is base64-decoded; any other string is taken as its UTF-8 bytes, so
a plain ``webhook_secret`` from ``segone.toml`` keeps working. The signature header may carry
several space-separated ``v1,`` entries (during a key rotation); ``verify`` accepts any match.
Following one spec means a receiver can check segone's requests with any Standard Webhooks
library instead of code written against segone.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE_S = 300


def secret_key(secret: str | bytes) -> bytes:
    """The HMAC key of ``secret``: base64-decoded after ``whsec_``, else the string's bytes."""
    if isinstance(secret, bytes):
        key = secret
    elif secret.startswith(SECRET_PREFIX):
        try:
            key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("a whsec_ webhook secret must be base64 after the prefix") from None
    else:
        key = secret.encode()
    if not key:
        raise ValueError("the webhook secret is empty")
    return key


def new_secret() -> str:
    """A fresh ``whsec_`` secret with a 32-byte random key."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(secret: str | bytes, msg_id: str, timestamp: int | str, body: bytes | str) -> str:
    """``v1,<base64 HMAC-SHA256(key, "{msg_id}.{timestamp}.{body}")>`` (one signature entry)."""
    raw = body.encode() if isinstance(body, str) else body
    content = f"{msg_id}.{int(timestamp)}.".encode() + raw
    mac = hmac.new(secret_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def headers(
    secret: str | bytes, msg_id: str, body: bytes | str, *, timestamp: int | None = None
) -> dict[str, str]:
    """The three Standard Webhooks headers for ``body`` signed now (or at ``timestamp``)."""
    stamp = int(time.time()) if timestamp is None else int(timestamp)
    return {
        ID_HEADER: msg_id,
        TIMESTAMP_HEADER: str(stamp),
        SIGNATURE_HEADER: sign(secret, msg_id, stamp, body),
    }


def verify(
    secret: str | bytes,
    msg_id: str,
    timestamp: str | int,
    body: bytes | str,
    signature: str,
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """True when one ``v1,`` entry of ``signature`` signs ``body`` (the raw request body) with
    ``msg_id`` and ``timestamp``, and the timestamp is within ``tolerance_s`` of ``now``
    (default this machine's clock) — the window stops an old request from being replayed."""
    try:
        sent = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - sent) > tolerance_s:
        return False
    try:
        expected = sign(secret, msg_id, sent, body)
    except ValueError:
        return False
    return any(hmac.compare_digest(expected, entry) for entry in (signature or "").split() if entry)


def verify_headers(
    secret: str | bytes,
    request_headers: Mapping[str, str],
    body: bytes | str,
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """``verify`` reading the three headers from ``request_headers`` (any letter case)."""
    lowered = {k.lower(): v for k, v in request_headers.items()}
    return verify(
        secret,
        lowered.get(ID_HEADER, ""),
        lowered.get(TIMESTAMP_HEADER, ""),
        body,
        lowered.get(SIGNATURE_HEADER, ""),
        tolerance_s=tolerance_s,
        now=now,
    )

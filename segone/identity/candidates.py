"""Which identifiers a looked-up string may be, and which values never identify anyone.

Plain Python over ``segone.identity.providers``, shared by the live path (``segone.live.identity``
stitches with it), the server's look-ups and erasure (``segone.identity.erase``).
"""

from __future__ import annotations

from collections.abc import Sequence

from segone.identity.graph import PRIORITY, IdentitySettings
from segone.identity.providers import norm_email, norm_phone, plain


def blocked_values(settings: IdentitySettings) -> frozenset[str]:
    blocked, extra = settings.blocked, settings.extra_blocked
    if type(blocked) is not tuple or type(extra) is not tuple:  # (lists could change)
        return _blocked(blocked, extra)
    hit = _BLOCKED.get(id(settings))
    if hit is None or hit[0] is not settings:  # remembered per (frozen) settings object
        if len(_BLOCKED) > 16:
            _BLOCKED.clear()
        hit = _BLOCKED[id(settings)] = (settings, _blocked(blocked, extra))
    return hit[1]


_BLOCKED: dict[int, tuple[IdentitySettings, frozenset[str]]] = {}


def _blocked(blocked: Sequence[str], extra: Sequence[str]) -> frozenset[str]:
    return frozenset(b.lower() for b in (*blocked, *extra))


def is_blocked(identifier: str, settings: IdentitySettings) -> bool:
    return identifier.split(":", 1)[1].lower() in blocked_values(settings)


def candidates(identifier: str, settings: IdentitySettings) -> list[str]:
    """The ``"type:value"`` identifiers a looked-up string may be, normalised (blocked values
    left out): ``"email:Jane@X.com"`` is that e-mail; a bare ``Jane@X.com``, ``+1 555 0100`` or
    ``u123`` is tried as every type it can be."""
    kind, _, value = identifier.partition(":")
    typed = kind in PRIORITY and bool(value)
    raw = value if typed else identifier
    cc = settings.default_country_code
    handle = (plain(raw) or "").lower().lstrip("@") or None
    forms = {
        "user_id": plain(raw),
        "source_id": plain(raw),
        "loyalty_id": plain(raw),
        "email": norm_email(raw),
        "phone": norm_phone(raw, cc),
        "handle": handle,
        "anonymous_id": plain(raw),
    }
    blocked = blocked_values(settings)
    out = []
    for k in [kind] if typed else list(PRIORITY):
        v = forms.get(k)
        if v is not None and v.lower() not in blocked:
            out.append(f"{k}:{v}")
    return out

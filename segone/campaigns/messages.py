"""Messages: Jinja2 templates rendered per person in a sandbox.

A template sees only what a campaign hands it: the profile ``fields`` the campaign names (and
``first_name``), the arm's ``offer``, the recommended ``products`` by name (never ids), the
``reason`` they were chosen and the ``unsubscribe_url``. Templates run in Jinja2's
``SandboxedEnvironment`` (no attribute access to Python internals, no imports), so a template
written by a marketer cannot read files or run code. A missing variable renders empty rather
than failing the send of a whole campaign; a template with a syntax error fails at load time,
naming the part (subject, text or html) and the line.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from jinja2 import TemplateSyntaxError, Undefined
from jinja2.sandbox import SandboxedEnvironment

from segone.campaigns.destinations.base import OutgoingEmail
from segone.exceptions import MessageError

_ENV = SandboxedEnvironment(undefined=Undefined, autoescape=False, keep_trailing_newline=True)
_HTML_ENV = SandboxedEnvironment(undefined=Undefined, autoescape=True, keep_trailing_newline=True)


@dataclass(frozen=True)
class MessageTemplate:
    """Subject, plain text and (optional) HTML templates of a campaign's message."""

    subject: str
    text: str
    html: str | None = None
    #: ``{customer_id}`` and ``{token}`` are filled in; the token is a keyed hash of the id
    unsubscribe_url: str | None = None

    def __post_init__(self) -> None:
        for part in ("subject", "text", "html"):
            src = getattr(self, part)
            if src is None:
                continue
            try:
                (_HTML_ENV if part == "html" else _ENV).from_string(src)
            except TemplateSyntaxError as exc:
                raise MessageError(f"message {part}, line {exc.lineno}: {exc.message}") from None

    @classmethod
    def from_obj(cls, obj: Any) -> MessageTemplate:
        if not isinstance(obj, Mapping) or "subject" not in obj or "text" not in obj:
            raise MessageError("a message needs a subject and a text (html is optional)")
        unknown = set(obj) - {"subject", "text", "html", "unsubscribe_url"}
        if unknown:
            raise MessageError(f"unknown message key(s) {sorted(unknown)}")
        return cls(
            str(obj["subject"]),
            str(obj["text"]),
            None if obj.get("html") is None else str(obj["html"]),
            obj.get("unsubscribe_url"),
        )


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str | None
    unsubscribe_url: str | None


def unsubscribe_token(secret: str, customer_id: str) -> str:
    """A keyed hash of the id, so an unsubscribe link cannot be forged for another person."""
    return hashlib.blake2b(
        customer_id.encode(), key=secret.encode()[:64], digest_size=16
    ).hexdigest()


def render(
    tpl: MessageTemplate,
    *,
    customer_id: str,
    fields: Mapping[str, Any],
    offer: Mapping[str, Any] | None = None,
    products: Sequence[Mapping[str, Any]] = (),
    reason: str | None = None,
    arm: str | None = None,
    secret: str = "",
) -> Rendered:
    """Render the message for one person."""
    unsub = None
    if tpl.unsubscribe_url:
        unsub = tpl.unsubscribe_url.format(
            customer_id=quote(customer_id, safe=""), token=unsubscribe_token(secret, customer_id)
        )
    ctx = {
        **{k: v for k, v in fields.items()},
        "person": dict(fields),
        "offer": dict(offer or {}),
        "products": [dict(p) for p in products],
        "reason": reason or "",
        "arm": arm or "",
        "unsubscribe_url": unsub or "",
    }
    try:
        subject = _ENV.from_string(tpl.subject).render(ctx).strip().replace("\n", " ")
        text = _ENV.from_string(tpl.text).render(ctx)
        html = _HTML_ENV.from_string(tpl.html).render(ctx) if tpl.html else None
    except Exception as exc:  # a sandbox violation or a filter error: name it, not the person
        raise MessageError(f"message cannot be rendered: {type(exc).__name__}: {exc}") from None
    return Rendered(subject, text, html, unsub)


def outgoing(
    customer_id: str, to: str, r: Rendered, message_id: str | None = None
) -> OutgoingEmail:
    return OutgoingEmail(
        customer_id=customer_id,
        to=to,
        subject=r.subject,
        text=r.text,
        html=r.html,
        unsubscribe_url=r.unsubscribe_url,
        message_id=message_id,
    )

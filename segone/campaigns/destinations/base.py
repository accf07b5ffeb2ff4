"""The contract between audiences and the places people are sent to.

An audience (``segone.campaigns``) hands a destination ``Member`` rows that are already filtered
for consent, suppression and erasure; a destination only shapes, sends and reports. Keeping the
filter on one side and the transport on the other means no connector can forget a consent check.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from segone.exceptions import DestinationError


@dataclass(frozen=True, slots=True)
class Member:
    """One reachable person in an audience, with only the fields the sync asked for."""

    customer_id: str
    email: str | None = None
    phone: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OutgoingEmail:
    """A rendered message for one person (rendering happens in ``segone.campaigns``)."""

    customer_id: str
    to: str
    subject: str
    text: str
    html: str | None = None
    unsubscribe_url: str | None = None
    message_id: str | None = None


@dataclass(slots=True)
class SyncReport:
    """What one sync did, per destination: counts only (never contact data)."""

    destination: str
    added: int = 0
    removed: int = 0
    unchanged: int = 0
    failed: int = 0
    requests: int = 0
    retries: int = 0
    errors: list[str] = field(default_factory=list)
    #: members changed since the last sync (a new field value or contact point) and re-sent
    updated: int = 0
    #: members the destination cannot hold (no e-mail for Mailchimp, no phone for SMS, ...)
    skipped: int = 0
    #: things worth knowing that are not failures (people sharing one address, ...)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return self.failed == 0 and not self.errors

    def as_dict(self) -> dict[str, Any]:
        """The report as plain JSON-able data (counts and error labels only)."""
        return {
            "destination": self.destination,
            "added": self.added,
            "updated": self.updated,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "skipped": self.skipped,
            "failed": self.failed,
            "requests": self.requests,
            "retries": self.retries,
            "errors": list(self.errors),
            "warnings": list(self.warnings),
        }


class Destination(Protocol):
    """A place an audience is synced to (file, webhook, Mailchimp, Klaviyo, Meta, Google, SMS)."""

    name: str

    def sync(self, members: Iterable[Member], *, list_id: str) -> SyncReport:
        """Make ``list_id`` at the destination hold exactly ``members``: incremental (adds and
        removes since the last successful sync of this list), idempotent on retry."""
        ...


__all__ = ["Destination", "DestinationError", "Member", "OutgoingEmail", "SyncReport"]

"""The rows the online store hands back, as types (not string-keyed dicts).

Each is frozen; ``as_dict()`` gives the JSON shape the API and ``--json`` print. JSON documents
the store keeps whole (an event's message, a live profile, a decision's body) stay ``dict``s:
their shape is the Segment spec's or the writer's, not the store's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, NamedTuple


class _Record:
    __slots__ = ()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]


class StoredEvent(NamedTuple):
    """An event in the log, in arrival order."""

    seq: int
    person_id: str
    message: dict[str, Any]


class PersonEvent(NamedTuple):
    """One of a person's events, with the time the server received it."""

    seq: int
    received_at: str
    message: dict[str, Any]


@dataclass(frozen=True, slots=True)
class JourneyEntry(_Record):
    ts: str
    kind: str
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class JourneyStep(_Record):
    """A journey entry in the order of the whole log (what triggered campaigns follow)."""

    id: int
    person_id: str
    ts: str
    kind: str
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class OutboxEntry(_Record):
    """A webhook waiting to be sent (or sent again)."""

    id: int
    person_id: str
    kind: str
    payload: dict[str, Any]
    attempts: int
    created_at: str


@dataclass(frozen=True, slots=True)
class FailingDelivery(_Record):
    """A webhook that failed at least once and will be tried again."""

    kind: str
    attempts: int
    last_error: str | None
    next_attempt_at: str


@dataclass(frozen=True, slots=True)
class DeadLetter(_Record):
    """A webhook given up on after its last attempt."""

    id: int
    person_id: str
    kind: str
    payload: dict[str, Any]
    created_at: str
    attempts: int
    last_error: str | None
    dead_at: str


@dataclass(frozen=True, slots=True)
class Decision(_Record):
    """A logged decision: what was shown, with the propensities (``doc``)."""

    decision_id: str
    person_id: str
    ts: str
    placement: str
    doc: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Feedback(_Record):
    item_id: str | None
    kind: str
    ts: str
    doc: dict[str, Any]


@dataclass(frozen=True, slots=True)
class LoggedDecision(_Record):
    """A decision with the item feedback recorded on it: (item_id, kind) pairs."""

    decision_id: str
    ts: str
    placement: str
    doc: dict[str, Any]
    feedback: list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class QuarantinedMessage(_Record):
    id: int
    received_at: str
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class ErasureLogEntry(_Record):
    """The audit line of one erasure: no personal data."""

    erasure_id: str
    at: str
    route: str
    people: int
    rows_removed: dict[str, int]

"""The write operations of the online store, one frozen dataclass each.

Everything the server writes is one of these, built by the engine with the time the request
was received (``now``: the writer never reads a clock of its own) and plain, picklable values,
so that an operation can cross to the writer process as it is. ``segone.online.writer.Writer``
applies them; ``segone.online.commit`` groups them into transactions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Ingest:
    """Validated Segment-spec messages, and the ``rejected`` rows of the same request (they
    go to the quarantine in the same transaction)."""

    now: datetime
    messages: Sequence[dict[str, Any]]
    rejected: Sequence[Mapping[str, Any]] = ()


@dataclass(frozen=True)
class Quarantine:
    """Rows that could not be read, with their reason."""

    rows: Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class Erase:
    """``DELETE /v1/profiles``: the person an identifier belongs to, everywhere online."""

    identifier: str
    now: datetime | None = None


@dataclass(frozen=True)
class Suppress:
    """Never contact (some channels of) an identifier, or never show it some items."""

    key: str
    doc: Mapping[str, Any]


@dataclass(frozen=True)
class Unsuppress:
    key: str


@dataclass(frozen=True)
class Decision:
    """A decision's log (with its propensities), its policy counters, and the contact it
    planned for the person (None when it planned none or the person is unknown)."""

    now: datetime
    decision_id: str
    who: str
    placement: str
    logged: Mapping[str, Any]
    stat_deltas: Any
    person_id: str | None
    planned: Mapping[str, Any] | None


@dataclass(frozen=True)
class Feedback:
    """An impression, click or conversion on a logged decision."""

    now: datetime
    body: Mapping[str, Any]


Operation = Ingest | Quarantine | Erase | Suppress | Unsuppress | Decision | Feedback
OPERATIONS: tuple[type[Operation], ...] = (
    Ingest,
    Quarantine,
    Erase,
    Suppress,
    Unsuppress,
    Decision,
    Feedback,
)


def size(op: Operation) -> int:
    """The events an operation carries (1 for the others): what groups are limited by."""
    return len(op.messages) if isinstance(op, Ingest) else 1

"""The parts of the online store's transaction (``segone.online.store.Tx``) that live logic
uses: ``tx.identity``, ``tx.docs`` and ``tx.journey``.

Protocols, so that ``segone.live`` depends on the store's interface, not on its package.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol


class LiveIdentity(Protocol):
    def lookup(self, identifiers: Sequence[str]) -> dict[str, str]: ...

    def link(self, identifier: str, person_id: str, source: str = "live") -> None: ...

    def identifiers_of(self, person_id: str) -> list[str]: ...

    def repoint(self, from_person: str, to_person: str) -> None: ...


class LiveDocs(Protocol):
    def get(self, kind: str, keys: Sequence[str]) -> dict[str, dict[str, Any]]: ...

    def put(self, kind: str, docs: Mapping[str, Mapping[str, Any]]) -> None: ...

    def delete(self, kind: str, keys: Sequence[str] | None = None) -> None: ...


class LiveJourney(Protocol):
    def add(self, person_id: str, ts: datetime, kind: str, detail: Mapping[str, Any]) -> None: ...


class LiveTx(Protocol):
    @property
    def identity(self) -> LiveIdentity: ...

    @property
    def docs(self) -> LiveDocs: ...

    @property
    def journey(self) -> LiveJourney: ...

"""The part of the online store's transaction (``segone.online.store.Tx``) that live logic uses.

A Protocol, so that ``segone.live`` depends on the store's interface, not on its module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol


class LiveTx(Protocol):
    def lookup(self, identifiers: Sequence[str]) -> dict[str, str]: ...

    def link(self, identifier: str, person_id: str, source: str = "live") -> None: ...

    def identifiers_of(self, person_id: str) -> list[str]: ...

    def repoint(self, from_person: str, to_person: str) -> None: ...

    def get_docs(self, kind: str, keys: Sequence[str]) -> dict[str, dict[str, Any]]: ...

    def put_docs(self, kind: str, docs: Mapping[str, Mapping[str, Any]]) -> None: ...

    def delete_docs(self, kind: str, keys: Sequence[str] | None = None) -> None: ...

    def add_journey(
        self, person_id: str, ts: datetime, kind: str, detail: Mapping[str, Any]
    ) -> None: ...

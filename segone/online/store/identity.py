"""``tx.identity``: which person each identifier (``"type:value"``, normalised) belongs to."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from segone.online.store.sql import Part, ts_text


class Identity(Part):
    __slots__ = ()

    def lookup(self, identifiers: Sequence[str]) -> dict[str, str]:
        rows = self._sql.rows_in(
            "SELECT identifier, person_id FROM identities WHERE identifier IN ({in})", identifiers
        )
        return {i: p for i, p in rows}

    def people_of(self, identifiers: Sequence[str]) -> set[str]:
        """The people holding any of ``identifiers``."""
        return set(self.lookup(identifiers).values())

    def link(
        self, identifier: str, person_id: str, source: str = "live", now: datetime | None = None
    ) -> None:
        self._sql.require_write()
        self._sql.exec(
            "INSERT INTO identities (identifier, person_id, source, updated_at) "
            "VALUES (?, ?, ?, ?) "
            "ON CONFLICT (identifier) DO UPDATE SET person_id = excluded.person_id, "
            "source = excluded.source, updated_at = excluded.updated_at",
            (identifier, person_id, source, ts_text(now or datetime.now(UTC))),
        )

    def identifiers_of(self, person_id: str) -> list[str]:
        rows = self._sql.rows(
            "SELECT identifier FROM identities WHERE person_id = ? ORDER BY identifier",
            (person_id,),
        )
        return [r[0] for r in rows]

    def repoint(self, from_person: str, to_person: str) -> None:
        """Everything recorded for ``from_person`` now belongs to ``to_person`` (a merge). Their
        documents are the caller's to combine."""
        self._sql.require_write()
        for table in ("identities", "events", "journey", "outbox", "decisions"):
            self._sql.exec(
                f"UPDATE {table} SET person_id = ? WHERE person_id = ?", (to_person, from_person)
            )

"""``tx.meta`` (small named values: the schema and published versions, counters) and
``tx.quarantine`` (rejected messages, kept with the reason)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from segone.online.store.records import QuarantinedMessage
from segone.online.store.sql import Part, to_json, when_text


class Meta(Part):
    __slots__ = ()

    def get(self, key: str) -> str | None:
        rows = self._sql.rows("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def set(self, key: str, value: str) -> None:
        self._sql.require_write()
        self._sql.exec(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )


class Quarantine(Part):
    __slots__ = ()

    def add(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Keep rejected messages with the reason (``reason``, ``message``, ``received_at``)."""
        self._sql.require_write()
        self._sql.many(
            "INSERT INTO quarantine (received_at, reason, message) VALUES (?, ?, ?)",
            [
                (
                    when_text(r.get("received_at")),
                    str(r["reason"]),
                    r["message"] if isinstance(r["message"], str) else to_json(r["message"]),
                )
                for r in rows
            ],
        )

    def recent(self, limit: int = 100) -> list[QuarantinedMessage]:
        """The first ``limit`` quarantined messages, oldest first."""
        rows = self._sql.rows(
            "SELECT id, received_at, reason, message FROM quarantine ORDER BY id LIMIT ?", (limit,)
        )
        return [QuarantinedMessage(int(i), t, r, m) for i, t, r, m in rows]

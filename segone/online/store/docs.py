"""``tx.docs``: JSON documents by kind and key (a person's live profile, published batch
results, channel statistics, the catalogue, suppressions)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from segone.online.store.sql import Part, from_json, to_json, ts_text


class Docs(Part):
    __slots__ = ()

    def get(self, kind: str, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The documents ``keys`` of ``kind`` that exist."""
        rows = self._sql.rows_in(
            "SELECT key, doc FROM docs WHERE kind = ? AND key IN ({in})", keys, (kind,)
        )
        return {k: from_json(d) for k, d in rows}

    def of(self, key: str, kinds: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The documents of one key, by kind (those that exist), in one query."""
        marks = ",".join("?" * len(kinds))
        sql = f"SELECT kind, doc FROM docs WHERE key = ? AND kind IN ({marks})"
        return {k: from_json(d) for k, d in self._sql.rows(sql, (key, *kinds))}

    def put(
        self, kind: str, docs: Mapping[str, Mapping[str, Any]], now: datetime | None = None
    ) -> None:
        self._sql.require_write()
        at = ts_text(now or datetime.now(UTC))
        self._sql.many(
            "INSERT INTO docs (kind, key, doc, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (kind, key) DO UPDATE SET doc = excluded.doc, "
            "updated_at = excluded.updated_at",
            [(kind, k, to_json(d), at) for k, d in docs.items()],
        )

    def delete(self, kind: str, keys: Sequence[str] | None = None) -> None:
        """Delete the documents ``keys`` of ``kind`` (all of that kind when ``keys`` is None)."""
        self._sql.require_write()
        if keys is None:
            self._sql.exec("DELETE FROM docs WHERE kind = ?", (kind,))
            return
        self._sql.delete_in("docs", "key", list(keys), kind)

    def all(self, kind: str) -> dict[str, dict[str, Any]]:
        return {
            k: from_json(d)
            for k, d in self._sql.rows("SELECT key, doc FROM docs WHERE kind = ?", (kind,))
        }

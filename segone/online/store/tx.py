"""``Tx``: one transaction of the online store, handed out in parts, one per concern.

``tx.events``, ``tx.journey``, ``tx.identity``, ``tx.docs``, ``tx.outbox``, ``tx.decisions``,
``tx.stats``, ``tx.meta``, ``tx.quarantine`` and ``tx.erasure`` each own their tables; all run
on the one connection (``Sql``), so what they do together commits or rolls back together.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from segone.online.store.decisions import Decisions, Stats
from segone.online.store.docs import Docs
from segone.online.store.erasure import Erasure
from segone.online.store.events import Events, Journey
from segone.online.store.identity import Identity
from segone.online.store.meta import Meta, Quarantine
from segone.online.store.outbox import Outbox
from segone.online.store.sql import Sql, _Dialect


class Tx:
    """One transaction on one connection. Created by ``OnlineStore.write()`` / ``read()``."""

    __slots__ = (
        "_sp",
        "_sql",
        "decisions",
        "docs",
        "erasure",
        "events",
        "identity",
        "journey",
        "meta",
        "outbox",
        "quarantine",
        "stats",
        "writable",
    )

    def __init__(self, conn: Any, dialect: _Dialect, *, writable: bool) -> None:
        self._sql = sql = Sql(conn, dialect, writable=writable)
        self.writable = writable
        self._sp = 0
        self.events = Events(sql)
        self.journey = Journey(sql)
        self.identity = Identity(sql)
        self.docs = Docs(sql)
        self.outbox = Outbox(sql)
        self.decisions = Decisions(sql)
        self.stats = Stats(sql)
        self.meta = Meta(sql)
        self.quarantine = Quarantine(sql)
        self.erasure = Erasure(sql, self.identity, self.meta)

    def count(self, table: str) -> int:
        """Rows in one of the online store's tables."""
        return self._sql.count(table)

    def execute(self, sql: str) -> None:
        """Run one statement that returns nothing (the schema's ``CREATE``s)."""
        self._sql.exec(sql)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested unit: rolled back alone if the block raises (the transaction goes on)."""
        self._sp += 1
        name = f"sp{self._sp}"
        self._sql.exec(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            self._sql.exec(f"ROLLBACK TO SAVEPOINT {name}")
            self._sql.exec(f"RELEASE SAVEPOINT {name}")
            raise
        else:
            self._sql.exec(f"RELEASE SAVEPOINT {name}")

"""``OnlineStore``: opening the online database (SQLite in WAL mode or PostgreSQL), its
connections, durability and transactions. What a transaction can do is in ``tx.py`` and its
parts; the SQL both engines share is in ``sql.py``.

Every write goes through ``OnlineStore.write()``, one
transaction on the one writer connection; an event is durable once that transaction commits
(SQLite: WAL with ``synchronous=FULL``, or ``defer_sync`` + ``sync``, which the writer process
uses; PostgreSQL: ``synchronous_commit`` as configured, on by default). Readers use their own
connections and never block the writer.

URLs: ``sqlite:///relative/or/absolute.db`` (``sqlite:////abs/path.db`` also works) or
``postgresql://user@host:port/db``; a ``?schema=NAME`` on a PostgreSQL URL keeps segone's tables
in that schema (created if missing).
"""

from __future__ import annotations

import os
import queue
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from segone.exceptions import ConfigError, OnlineStoreError
from segone.online.store.sql import POSTGRES, SCHEMA_VERSION, SQLITE, TABLES, _Dialect
from segone.online.store.tx import Tx


class OnlineStore:
    """The online database: ``OnlineStore.open(url)``, then ``write()`` / ``read()``."""

    def __init__(self, url: str, dialect: _Dialect, connect: Any, *, readers: int = 8) -> None:
        self.url = url
        self.dialect = dialect
        self._connect = connect
        self._writer: Any = None
        self._write_lock = threading.Lock()
        self._readers: queue.LifoQueue[Any] = queue.LifoQueue()
        self._max_readers = readers
        self._opened = 0
        self._open_lock = threading.Lock()
        self._all: list[Any] = []
        self.path: Path | None = None  # the SQLite file
        self._deferred = False  # ``defer_sync`` was called
        self._wal_fd: int | None = None
        self._checkpointer: Any = None

    @classmethod
    def open(cls, url: str, *, root: Path | None = None) -> OnlineStore:
        """Open (and create the tables of) the store at ``url``; relative SQLite paths are taken
        from ``root`` (the project directory) when given."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme in ("", "sqlite"):
            raw = url[len("sqlite:///") :] if scheme == "sqlite" else url
            if not raw:
                raise ConfigError(
                    f"online store URL {url!r} names no file (sqlite:///path/online.db)"
                )
            path = Path(raw)
            if not path.is_absolute() and root is not None:
                path = root / path
            path.parent.mkdir(parents=True, exist_ok=True)
            store = cls(url, SQLITE, lambda: _sqlite_connect(path))
            store.path = path
        elif scheme in ("postgresql", "postgres"):
            query = parse_qs(parts.query)
            schema = (query.pop("schema", [""]) or [""])[0]
            clean = urlunsplit(parts._replace(query=urlencode(query, doseq=True)))
            store = cls(url, POSTGRES, lambda: _pg_connect(clean, schema))
        else:
            raise ConfigError(
                f"online store URL {url!r}: use sqlite:///path/online.db or postgresql://user@host/db"
            )
        store.ensure_schema()
        return store

    @staticmethod
    def _defer(conn: Any) -> None:
        conn.execute("PRAGMA synchronous=NORMAL")
        # checkpoints leave the COMMIT path too: ``checkpoint()`` runs them beside it, and
        # ``checkpoint(on_writer=True)`` between two groups lets the WAL start over
        conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")

    def _new(self) -> Any:
        conn = self._connect()
        with self._open_lock:
            self._all.append(conn)
        return conn

    def defer_sync(self) -> None:
        """SQLite: from now on the writer's COMMIT returns before the WAL is on disk, and
        ``sync()`` puts it there. A caller that acknowledges a transaction only after a
        ``sync()`` begun after its COMMIT keeps ``synchronous=FULL``'s durability, and can do
        the next transaction's work while the disk flushes (``segone.online.writer`` does).

        Why that holds: with ``synchronous=NORMAL`` SQLite still writes each committed
        transaction's frames to the WAL at COMMIT (only the fsync is skipped); frames after the
        last synced commit frame fail the WAL's cumulative checksum at recovery and are
        ignored; and the WAL is only overwritten from its start after a checkpoint that SQLite
        syncs into the database file. The WAL file is never replaced while a connection is
        open (``sync`` checks), so this process's descriptor on it stays the right one."""
        if self.dialect is not SQLITE or self.path is None:
            raise OnlineStoreError("deferred sync is for SQLite stores")
        with self.write():  # the writer connection exists (and, since the tables, the WAL)
            pass
        with self._write_lock:
            self._deferred = True
            self._defer(self._writer)
        self._wal_fd = os.open(self._wal_path(), os.O_RDONLY | os.O_CLOEXEC)

    def _wal_path(self) -> str:
        return str(self.path) + "-wal"

    def sync(self) -> None:
        """Put every transaction committed so far on disk (after ``defer_sync``)."""
        if self._wal_fd is None:
            return
        try:
            if os.fstat(self._wal_fd).st_ino != os.stat(self._wal_path()).st_ino:
                raise OnlineStoreError("the online store's WAL file was replaced")
            os.fdatasync(self._wal_fd)
        except OSError as exc:
            raise OnlineStoreError(f"the online store cannot sync: {type(exc).__name__}") from exc

    def checkpoint(self, *, on_writer: bool = False) -> None:
        """Copy what the WAL holds into the database file (SQLite; PASSIVE: it never waits
        for a reader), on a connection of its own (never blocking the writer), which syncs the
        WAL before and the database file after.

        A checkpoint beside a writer that never pauses never finishes, and SQLite starts the
        WAL over only when a write begins on a WAL that is entirely in the database file: so
        now and then (``wal_size() > WAL_LIMIT_BYTES``) the writer's own connection runs one
        between two of its transactions, copying what the other one has not yet."""
        if self.dialect is not SQLITE:
            return
        if on_writer:
            with self._write_lock, _unavailable():
                if self._writer is not None:
                    self._writer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            return
        conn = self._checkpointer
        if conn is None:
            conn = self._checkpointer = self._new()
        with _unavailable():
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def scrub(self) -> bool:
        """After an erasure: copy the WAL into the database file and truncate it, so deleted
        rows' old page images leave the WAL too (SQLite: ``secure_delete`` has already zeroed
        them in the pages). True when done; False when a reader kept the WAL from being reset
        (its frames are then overwritten as the WAL starts over, after the next checkpoint).
        PostgreSQL keeps dead tuples until ``VACUUM`` (see docs/server.md)."""
        if self.dialect is not SQLITE:
            return False
        conn = self._new()
        try:
            with _unavailable():
                # a TRUNCATE checkpoint holds off writers while it waits for readers: briefly
                conn.execute("PRAGMA busy_timeout=1000")
                busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            return not busy
        finally:
            with self._open_lock:
                if conn in self._all:
                    self._all.remove(conn)
            conn.close()

    def wal_size(self) -> int:
        """Bytes in the SQLite WAL file (0 if there is none)."""
        try:
            return os.stat(self._wal_path()).st_size if self.path is not None else 0
        except OSError:
            return 0

    def ensure_schema(self) -> None:
        with self.write() as tx:
            for stmt in TABLES.format(serial=self.dialect.serial).split(";"):
                if stmt.strip():
                    tx.execute(stmt)
            if tx.meta.get("schema_version") is None:
                tx.meta.set("schema_version", SCHEMA_VERSION)

    @contextmanager
    def write(self) -> Iterator[Tx]:
        """The writer's transaction: committed (durably) when the block ends, rolled back if it
        raises. Writers take turns; the Engine batches requests into one of these."""
        with self._write_lock:
            with _unavailable():
                if self._writer is None:
                    self._writer = self._new()
                    if self.dialect is SQLITE:  # the hot pages of a large store stay in memory
                        self._writer.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
                        if self._deferred:  # a new connection after a failed COMMIT
                            self._defer(self._writer)
                conn = self._writer
                if self.dialect is SQLITE:
                    conn.execute("BEGIN IMMEDIATE")
                else:
                    # Writers take turns across servers too: several `segone serve` on one
                    # PostgreSQL each read and rewrite a person's live document, and under READ
                    # COMMITTED two of them would lose one another's update.
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITER_LOCK_KEY,))
            try:
                yield Tx(conn, self.dialect, writable=True)
            except BaseException:
                with suppress(Exception):
                    conn.rollback()
                if _broken(conn):  # reconnect next time (e.g. PostgreSQL restarted)
                    self._writer = None
                raise
            else:
                try:
                    with _unavailable():
                        conn.commit()
                except OnlineStoreError:
                    # whatever state the failed COMMIT left (a transaction still open, holding
                    # the write lock) goes with the connection; the next write opens a new one
                    self._writer = None
                    with suppress(Exception):
                        conn.rollback()
                    with suppress(Exception):
                        conn.close()
                    raise

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """A read-only snapshot on a pooled connection."""
        try:
            conn = self._readers.get_nowait()
        except queue.Empty:
            with _unavailable():
                conn = self._new()
        if _broken(conn):
            with _unavailable():
                conn = self._new()
        try:
            if self.dialect is SQLITE:
                conn.execute("BEGIN")
            yield Tx(conn, self.dialect, writable=False)
        finally:
            try:
                conn.rollback()
            finally:
                if self._readers.qsize() < self._max_readers:
                    self._readers.put(conn)
                else:
                    conn.close()

    def close(self) -> None:
        with self._open_lock:
            conns, self._all = self._all, []
        for c in conns:
            with suppress(Exception):
                c.close()
        self._writer = None
        self._checkpointer = None
        self._readers = queue.LifoQueue()
        if self._wal_fd is not None:
            os.close(self._wal_fd)
            self._wal_fd = None

    def __enter__(self) -> OnlineStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: PostgreSQL advisory lock held by each write transaction (any fixed 64-bit key)
WRITER_LOCK_KEY = 0x5E60E_0001


def _driver_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [sqlite3.OperationalError]
    try:
        import psycopg

        errors.append(psycopg.OperationalError)
    except ImportError:  # pragma: no cover - psycopg is a dependency
        pass
    return tuple(errors)


@contextmanager
def _unavailable() -> Iterator[None]:
    """The database being unreachable (or locked past the timeout) is an OnlineStoreError, which
    the API answers with 503: the client may retry; nothing was acknowledged."""
    try:
        yield
    except _driver_errors() as exc:
        raise OnlineStoreError(f"the online store is unavailable: {type(exc).__name__}") from exc


def _broken(conn: Any) -> bool:
    """A PostgreSQL connection that the server closed (sqlite connections do not break)."""
    return bool(getattr(conn, "closed", False))


WRITER_CACHE_KIB = 64 * 1024  # the SQLite writer's page cache (SQLite's default is 2 MiB)
WAL_LIMIT_BYTES = 64 * 1024 * 1024  # past this, the writer lets the WAL start over


def _sqlite_connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit is on disk before it returns, so an acknowledged event survives a crash of
    # the machine, not only of the process
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=30000")
    # statement journals (one per savepoint'ed statement) in memory, not as files in /var/tmp
    conn.execute("PRAGMA temp_store=MEMORY")
    # a deleted row's bytes are overwritten with zeros, not left in free space (erasure)
    conn.execute("PRAGMA secure_delete=ON")
    # isolation_level=None leaves transactions to us; sqlite3's commit()/rollback() still work
    return conn


def _pg_connect(url: str, schema: str) -> Any:
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - psycopg is a dependency
        raise OnlineStoreError("PostgreSQL needs psycopg: pip install 'psycopg[binary]'") from exc
    try:
        conn = psycopg.connect(url, autocommit=False, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise OnlineStoreError(f"cannot connect to the online store's PostgreSQL: {exc}") from None
    if schema:
        if not schema.replace("_", "").isalnum():
            raise ConfigError(f"online store schema {schema!r}: letters, digits and _ only")
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        conn.execute(f'SET search_path TO "{schema}"')
        conn.commit()
    return conn

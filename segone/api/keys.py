"""API keys: who may call what (scopes), from where (origins) and how often (rate), kept hashed.

Two sources, merged into one ``KeyRing``:

- ``segone keys create|list|rotate|revoke`` keeps keys in the project's key file (``[server]
  keys_file``, default ``keys.json``): only the SHA-256 of each secret is stored, with its
  scopes, allowed browser origins and rate limit. The secret is shown once, at creation. A
  running server re-reads the file within a second of a change, so a revoked key stops working
  without a restart.
- The keys and tokens of the settings (``[server] write_keys``, ``decide_tokens``,
  ``admin_tokens`` and their ``SEGONE_*`` variables) keep working, as keys of the matching kind.

Why plain SHA-256 and not a slow password hash: the secrets are 192 random bits made by
``secrets``, so there is nothing to brute-force, and a lookup must cost microseconds on the
ingestion path. A presented key is hashed and looked up; its hash says nothing about how close a
guess was, so there is no timing to learn from (unlike comparing the secrets themselves).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from segone.config import parse_origin
from segone.exceptions import ConfigError

# what a key may do; each route needs one of them (segone.api.app.ROUTE_SCOPES)
SCOPES = ("ingest", "decide", "read", "erase", "admin")
# a key's kind fixes its default scopes and the prefix of its secret
KINDS: dict[str, tuple[str, ...]] = {
    "write": ("ingest",),
    "decide": ("decide",),
    "admin": ("decide", "read", "erase", "admin"),
}
PREFIXES = {"write": "wk", "decide": "dk", "admin": "ak"}
FILE_VERSION = 1


def digest(secret: str) -> str:
    """How a secret is stored and looked up."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Key:
    """One key as the server knows it (never its secret)."""

    id: str
    kind: str
    scopes: frozenset[str]
    origins: frozenset[str] = frozenset()
    rate_per_second: float | None = None  # None: the server's [server] rate_limit_per_second
    burst: float | None = None
    name: str = ""
    source: str = "file"  # "file" (segone keys) or "settings"

    def allows_origin(self, origin: str) -> bool:
        return origin in self.origins or "*" in self.origins


@dataclass(frozen=True)
class KeyRecord:
    """One key as the key file keeps it."""

    id: str
    kind: str
    scopes: tuple[str, ...]
    hash: str
    created_at: str
    name: str = ""
    origins: tuple[str, ...] = ()
    rate_per_second: float | None = None
    burst: float | None = None
    revoked_at: str | None = None
    expires_at: str | None = None  # a rotated key's grace period ends here

    def active(self, now: datetime) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or datetime.fromisoformat(self.expires_at) > now

    def key(self) -> Key:
        return Key(
            self.id,
            self.kind,
            frozenset(self.scopes),
            frozenset(self.origins),
            self.rate_per_second,
            self.burst,
            self.name,
        )

    def public(self, now: datetime) -> dict[str, Any]:
        """What ``segone keys list`` shows: everything but the hash."""
        doc = {k: v for k, v in asdict(self).items() if k != "hash"}
        doc["scopes"] = list(self.scopes)
        doc["origins"] = list(self.origins)
        doc["active"] = self.active(now)
        return doc


def check_origins(origins: Iterable[str]) -> tuple[str, ...]:
    return tuple(parse_origin(o) for o in origins if o.strip())


def check_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    out = tuple(dict.fromkeys(s.strip() for s in scopes if s.strip()))
    unknown = [s for s in out if s not in SCOPES]
    if unknown:
        raise ConfigError(f"unknown scope(s) {unknown}; scopes are {', '.join(SCOPES)}")
    return out


class KeyFile:
    """The project's key file: read, changed and written whole (atomically, mode 0600)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def records(self) -> list[KeyRecord]:
        if not self.path.exists():
            return []
        try:
            doc = orjson.loads(self.path.read_bytes())
            if doc.get("version") != FILE_VERSION:
                raise ConfigError(f"{self.path}: unknown key file version {doc.get('version')!r}")
            return [
                KeyRecord(
                    **{
                        **r,
                        "scopes": tuple(r["scopes"]),
                        "origins": tuple(r.get("origins", ())),
                    }
                )
                for r in doc["keys"]
            ]
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(
                f"{self.path}: not a segone key file ({type(exc).__name__})"
            ) from None

    def _write(self, records: Sequence[KeyRecord]) -> None:
        doc = {"version": FILE_VERSION, "keys": [asdict(r) for r in records]}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".keys-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def create(
        self,
        kind: str,
        *,
        name: str = "",
        scopes: Sequence[str] = (),
        origins: Sequence[str] = (),
        rate_per_second: float | None = None,
        burst: float | None = None,
        now: datetime | None = None,
    ) -> tuple[KeyRecord, str]:
        """A new key; returns its record and its secret (shown once, never stored)."""
        if kind not in KINDS:
            raise ConfigError(f"unknown key kind {kind!r}; kinds are {', '.join(KINDS)}")
        if rate_per_second is not None and not rate_per_second > 0:
            raise ConfigError("the rate must be a positive number of requests per second")
        if burst is not None and not burst >= 1:
            raise ConfigError("the burst must be at least 1 request")
        records = self.records()
        taken = {r.id for r in records}
        kid = secrets.token_hex(4)
        while kid in taken:
            kid = secrets.token_hex(4)
        secret = f"{PREFIXES[kind]}_{kid}_{secrets.token_urlsafe(24)}"
        record = KeyRecord(
            id=kid,
            kind=kind,
            scopes=check_scopes(scopes) or KINDS[kind],
            hash=digest(secret),
            created_at=(now or datetime.now(UTC)).isoformat(timespec="seconds"),
            name=name,
            origins=check_origins(origins),
            rate_per_second=rate_per_second,
            burst=burst,
        )
        self._write([*records, record])
        return record, secret

    def _find(self, records: list[KeyRecord], key_id: str) -> int:
        for i, r in enumerate(records):
            if r.id == key_id:
                return i
        raise ConfigError(f"no key has the id {key_id!r} (see `segone keys list`)")

    def revoke(self, key_id: str, now: datetime | None = None) -> KeyRecord:
        records = self.records()
        i = self._find(records, key_id)
        if records[i].revoked_at is None:
            stamp = (now or datetime.now(UTC)).isoformat(timespec="seconds")
            records[i] = replace(records[i], revoked_at=stamp)
            self._write(records)
        return records[i]

    def rotate(
        self, key_id: str, grace: timedelta = timedelta(0), now: datetime | None = None
    ) -> tuple[KeyRecord, str]:
        """A new secret with the old key's kind, scopes, origins and rate; the old secret stops
        working now, or after ``grace`` (time to deploy the new one)."""
        now = now or datetime.now(UTC)
        records = self.records()
        i = self._find(records, key_id)
        old = records[i]
        if not old.active(now):
            raise ConfigError(f"key {key_id} is revoked or expired; create a new one")
        if grace > timedelta(0):
            records[i] = replace(old, expires_at=(now + grace).isoformat(timespec="seconds"))
        else:
            records[i] = replace(old, revoked_at=now.isoformat(timespec="seconds"))
        self._write(records)
        name = old.name or f"rotated from {old.id}"
        return self.create(
            old.kind,
            name=name,
            scopes=old.scopes,
            origins=old.origins,
            rate_per_second=old.rate_per_second,
            burst=old.burst,
            now=now,
        )


@dataclass
class KeyRing:
    """Every active key by the digest of its secret: the settings' keys and the key file's,
    the file re-read when it changes (checked at most once a second)."""

    settings_keys: Mapping[str, Key] = field(default_factory=dict)
    path: Path | None = None
    _by_digest: dict[str, Key] = field(default_factory=dict)
    _stamp: tuple[int, int] | None = None
    _checked: float = -1.0
    _expiry: datetime | None = None
    _origins: frozenset[str] = frozenset()

    @classmethod
    def from_settings(cls, server: Any, root: Path | None = None) -> KeyRing:
        """From the ``[server]`` settings: ``write_keys``, ``decide_tokens``, ``admin_tokens``,
        and ``keys_file`` (relative to the project's ``root``)."""
        keys: dict[str, Key] = {}
        for kind, values in (
            ("write", server.write_keys),
            ("decide", server.decide_tokens),
            ("admin", server.admin_tokens),
        ):
            for i, v in enumerate(values):
                if v:
                    keys[digest(v)] = Key(
                        f"settings:{kind}:{i}", kind, frozenset(KINDS[kind]), source="settings"
                    )
        keys_file = getattr(server, "keys_file", "")
        path = None
        if keys_file:
            path = Path(keys_file)
            if not path.is_absolute() and root is not None:
                path = Path(root) / path
        ring = cls(keys, path)
        ring.reload(force=True)
        return ring

    def reload(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checked < 1.0:
            return
        self._checked = now
        wall = datetime.now(UTC)
        stamp = None
        if self.path is not None:
            try:
                st = self.path.stat()
                stamp = (st.st_mtime_ns, st.st_size)
            except FileNotFoundError:
                stamp = None
        expired = self._expiry is not None and wall >= self._expiry
        if not force and stamp == self._stamp and not expired:
            return
        self._stamp = stamp
        by_digest = dict(self.settings_keys)
        expiry = None
        if stamp is not None and self.path is not None:
            for r in KeyFile(self.path).records():
                if r.active(wall):
                    by_digest[r.hash] = r.key()
                    if r.expires_at is not None:
                        e = datetime.fromisoformat(r.expires_at)
                        expiry = e if expiry is None else min(expiry, e)
        self._by_digest = by_digest
        self._expiry = expiry
        self._origins = frozenset(o for k in by_digest.values() for o in k.origins)

    def lookup(self, secret: str | None) -> Key | None:
        """The active key with this secret, if any."""
        if not secret:
            return None
        self.reload()
        return self._by_digest.get(digest(secret))

    def any_with(self, scope: str) -> bool:
        self.reload()
        return any(scope in k.scopes for k in self._by_digest.values())

    def origins(self) -> frozenset[str]:
        """Every origin some key allows (for preflight requests, which carry no key)."""
        self.reload()
        return self._origins

"""A CSV or Parquet file of the audience: only the columns asked for, optionally hashed.

A file is a snapshot, so each sync rewrites it whole (to a temporary file, then renamed: a
reader never sees half a file); the report still counts adds and removes against the previous
sync, which is what an operator uploading the file by hand wants to know. ``{list_id}`` in the
path is replaced, so one destination can write one file per list.

Columns are ``customer_id``, ``email``, ``phone`` or a name in the members' ``fields``; asking
for a column no member carries is an error (a typo must not silently export an empty column).
``hash: true`` writes ``email`` and ``phone`` as SHA-256 of their normalised form (Meta's rules,
the common denominator of upload tools) instead of the plain values.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from segone.campaigns.destinations import normalise
from segone.campaigns.destinations.base import DestinationError, Member, SyncReport
from segone.campaigns.destinations.sync_state import Synced, SyncState

log = logging.getLogger("segone.destinations")

FORMATS = ("csv", "parquet")


class FileDestination:
    """See the module doc."""

    def __init__(
        self,
        name: str,
        path: Path,
        state: SyncState,
        *,
        columns: Sequence[str] = ("customer_id", "email"),
        fmt: str | None = None,
        hash_contacts: bool = False,
        default_country_code: str | None = None,
    ) -> None:
        fmt = fmt or path.suffix.lstrip(".").lower()
        if fmt not in FORMATS:
            raise DestinationError(
                f"file: cannot tell the format of {path.name!r}; "
                f"set format to one of {', '.join(FORMATS)}"
            )
        if not columns:
            raise DestinationError("file: columns is empty")
        if len(set(columns)) != len(columns):
            raise DestinationError("file: a column is listed twice")
        self.name = name
        self.path = path
        self.state = state
        self.columns = tuple(columns)
        self.fmt = fmt
        self.hash_contacts = hash_contacts
        self.cc = default_country_code

    def _getter(self, column: str) -> Callable[[Member], Any]:
        """How to read ``column`` from a member (chosen once per column, not per row)."""
        if column == "customer_id":
            return lambda m: m.customer_id
        if column == "email":
            if self.hash_contacts:
                return lambda m: normalise.meta_email_hash(m.email) or None
            return lambda m: m.email
        if column == "phone":
            if self.hash_contacts:
                return lambda m: normalise.meta_phone_hash(m.phone, self.cc) or None
            return lambda m: m.phone
        return lambda m: m.fields.get(column)

    def sync(self, members: Iterable[Member], *, list_id: str) -> SyncReport:
        report = SyncReport(destination=self.name)
        rows: list[tuple[Any, ...]] = []
        now: dict[str, str] = {}  # customer id -> digest of its row
        seen_fields: set[str] = set()
        getters = [self._getter(c) for c in self.columns]
        for m in members:
            if m.fields:
                seen_fields.update(m.fields)
            row = tuple(g(m) for g in getters)
            rows.append(row)
            # change detection only (not an idempotency key): a short hash of the row's text
            now[m.customer_id] = hashlib.blake2b(
                "\x1f".join(map(str, row)).encode(), digest_size=12
            ).hexdigest()
        missing = [
            c for c in self.columns if c not in {"customer_id", "email", "phone"} | seen_fields
        ]
        if rows and missing:
            raise DestinationError(
                f"file: no member has the column(s) {', '.join(missing)}; "
                f"the audience carries {', '.join(sorted(seen_fields)) or 'no extra fields'}"
            )
        target = Path(str(self.path).replace("{list_id}", list_id))
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        if self.fmt == "csv":
            with tmp.open("w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                w.writerow(self.columns)
                w.writerows(rows)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pylist(
                [dict(zip(self.columns, r, strict=True)) for r in rows],
                schema=None if rows else pa.schema([(c, pa.string()) for c in self.columns]),
            )
            pq.write_table(table, tmp)
        os.replace(tmp, target)
        # the state tracks what the file held, for the adds/removes of the report
        before = self.state.load(self.name, list_id)
        report.added = sum(k not in before for k in now)
        report.updated = sum(k in before and before[k].digest != d for k, d in now.items())
        report.unchanged = sum(k in before and before[k].digest == d for k, d in now.items())
        gone = [k for k in before if k not in now]
        report.removed = len(gone)
        self.state.removed(self.name, list_id, gone)
        changed = [
            (k, Synced(d, k)) for k, d in now.items() if k not in before or before[k].digest != d
        ]
        self.state.added(self.name, list_id, changed)
        self.state.completed(self.name, list_id)
        report.requests = 1
        log.info(
            "%s: wrote %d rows (%d added, %d removed since the last sync)",
            self.name,
            len(rows),
            report.added,
            report.removed,
        )
        return report

"""The sync loop every HTTP destination shares: diff against the state, batch, send, retry, record.

A connector (``connectors.py``) only says how one member looks at its platform and which
requests add or remove a batch; this module does the rest the same way for all of them:

1. shape every member (``Connector.item``); those the platform cannot hold are ``skipped``;
2. diff against ``SyncState``: new or changed members are added, gone ones removed (a member
   whose contact point changed is removed under the old one and added under the new one);
3. send batches with an idempotency key derived from their content (``Idempotency-Key``
   header, and whatever id the platform itself uses), retrying 429/5xx/transport errors with
   exponential back-off and jitter, honouring ``Retry-After``;
4. record each batch in the state once the platform accepted it, so a failure or a crash is
   resumed by the next sync and nothing accepted is sent again;
5. return a ``SyncReport``; logs carry counts and status codes, never contact data.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import httpx

from segone.campaigns.destinations.base import Member, SyncReport
from segone.campaigns.destinations.sync_state import (
    RetryPolicy,
    Synced,
    SyncState,
    digest,
    request_id,
    retrying,
)

log = logging.getLogger("segone.destinations")


class BatchFailed(Exception):
    """A request of a batch failed for good; the message is a label (no URL, no data)."""


@dataclass(frozen=True, slots=True)
class Item:
    """One member as a platform sees it: the payload sent and the token that removes it."""

    key: str
    payload: Any
    token: str

    @property
    def digest(self) -> str:
        return digest(self.payload)


@dataclass(frozen=True, slots=True)
class Call:
    """One HTTP request. ``content`` + ``sign`` for bodies signed per attempt (webhooks)."""

    method: str
    path: str
    json: Any = None
    content: bytes | None = None
    params: Mapping[str, str] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    sign: Callable[[], Mapping[str, str]] | None = None


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """What every HTTP destination takes besides its own keys."""

    base_url: str
    timeout: float = 30.0
    batch_size: int = 500
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    random_state: int | None = None


class Http:
    """Sends ``Call``s with retries, counting requests and retries into a report."""

    def __init__(
        self,
        client: httpx.Client,
        policy: RetryPolicy,
        report: SyncReport,
        *,
        rng: random.Random,
        sleep: Callable[[float], None],
    ) -> None:
        self.client = client
        self.policy = policy
        self.report = report
        self.rng = rng
        self.sleep = sleep

    def __call__(self, call: Call, *, request_id: str) -> httpx.Response:
        last: list[httpx.Response] = []
        # encoded here, not by httpx: field values may be dates or decimals (sent as text)
        body = (
            json.dumps(call.json, separators=(",", ":"), default=str).encode()
            if call.json is not None
            else call.content
        )

        def attempt() -> tuple[int | None, Mapping[str, str], str | None]:
            headers = {"Idempotency-Key": request_id, **call.headers}
            if call.sign is not None:
                headers.update(call.sign())
            if body is not None and "content-type" not in self.client.headers:
                headers.setdefault("Content-Type", "application/json")
            self.report.requests += 1
            try:
                resp = self.client.request(
                    call.method,
                    call.path,
                    content=body,
                    params=call.params,
                    headers=headers,
                )
            except httpx.TransportError as exc:
                return None, {}, type(exc).__name__
            last[:] = [resp]
            return resp.status_code, resp.headers, None

        _, retries, error = retrying(attempt, self.policy, rng=self.rng, sleep=self.sleep)
        self.report.retries += retries
        if error is not None:
            raise BatchFailed(f"{call.method} {error}")
        return last[0]


class Connector:
    """How one platform holds a list (subclassed per platform in ``connectors.py``)."""

    kind = "http"
    #: largest remove batch (add batches use ``HttpSettings.batch_size``)
    remove_batch_size = 500
    #: True when accepted batches only take effect at ``finish`` (Google's job run)
    deferred = False

    def headers(self) -> dict[str, str]:
        return {}

    def item(self, member: Member) -> Item | None:
        raise NotImplementedError

    def add(self, http: Http, items: Sequence[Item], list_id: str, rid: str) -> set[str]:
        """Send one add batch; returns the keys the platform refused inside a 2xx answer."""
        raise NotImplementedError

    def remove(self, http: Http, items: Sequence[tuple[str, str]], list_id: str, rid: str) -> None:
        """Remove one batch of (key, token)."""
        raise NotImplementedError

    def begin(self) -> None:
        """Before a sync's first request (forget anything a previous, aborted sync left)."""

    def finish(self, http: Http, list_id: str, rid: str) -> None:
        """After all batches (Google runs its job here)."""


T = TypeVar("T")


def _chunks(seq: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


class HttpDestination:
    """A ``Destination`` over HTTP: the loop of the module doc around one ``Connector``."""

    def __init__(
        self,
        name: str,
        connector: Connector,
        settings: HttpSettings,
        state: SyncState,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = name
        self.connector = connector
        self.settings = settings
        self.state = state
        self.sleep = sleep
        self._rng = random.Random(settings.random_state)

    def sync(self, members: Iterable[Member], *, list_id: str) -> SyncReport:
        report = SyncReport(destination=self.name)
        shaped: dict[str, Item] = {}
        for m in members:
            it = self.connector.item(m)
            if it is None:
                report.skipped += 1
            else:
                shaped[it.key] = it
        # two people sharing one contact point are one entry at the platform: the first by id
        # holds it (sending both would be a duplicate, removing one would drop the other)
        items: dict[str, Item] = {}
        holders: dict[str, str] = {}
        for key in sorted(shaped):
            it = shaped[key]
            if it.token in holders:
                report.skipped += 1
            else:
                holders[it.token] = key
                items[key] = it
        if len(items) < len(shaped):
            report.warnings.append(
                f"{len(shaped) - len(items)} member(s) share a contact point with another"
            )
        before = self.state.load(self.name, list_id)
        adds: list[Item] = []
        removes: list[tuple[str, str]] = [(k, s.token) for k, s in before.items() if k not in items]
        # a token another member now holds stays at the platform: only the state forgets it
        kept = [k for k, t in removes if t in holders]
        removes = [(k, t) for k, t in removes if t not in holders]
        for key in sorted(items):
            it, old = items[key], before.get(key)
            if old is None:
                adds.append(it)
            elif old.digest != it.digest:
                adds.append(it)
                if old.token != it.token and old.token not in holders:
                    # a new contact point: the old one leaves the list
                    removes.append((key, old.token))
            else:
                report.unchanged += 1
        removes.sort()
        if kept:
            self.state.removed(self.name, list_id, kept)
            report.removed += len(kept)
        epoch = self.state.epoch(self.name, list_id)
        replaced = {k for k, _ in removes if k in items}
        pending: list[Callable[[], None]] = []

        def commit(fn: Callable[[], None]) -> None:
            if self.connector.deferred:
                pending.append(fn)
            else:
                fn()

        with httpx.Client(
            base_url=self.settings.base_url,
            timeout=self.settings.timeout,
            headers=self.connector.headers(),
        ) as client:
            http = Http(client, self.settings.retry, report, rng=self._rng, sleep=self.sleep)
            self.connector.begin()
            for gone in _chunks(removes, self.connector.remove_batch_size):
                rid = request_id(self.name, list_id, epoch, "remove", [t for _, t in gone])
                try:
                    self.connector.remove(http, gone, list_id, rid)
                except BatchFailed as exc:
                    report.failed += len(gone)
                    report.errors.append(f"remove batch of {len(gone)}: {exc}")
                    continue
                keys = [k for k, _ in gone]
                commit(partial(self.state.removed, self.name, list_id, keys))
                report.removed += sum(k not in replaced for k in keys)
            for batch in _chunks(adds, self.settings.batch_size):
                rid = request_id(self.name, list_id, epoch, "add", [i.payload for i in batch])
                try:
                    refused = self.connector.add(http, batch, list_id, rid)
                except BatchFailed as exc:
                    report.failed += len(batch)
                    report.errors.append(f"add batch of {len(batch)}: {exc}")
                    continue
                ok = [(i.key, Synced(i.digest, i.token)) for i in batch if i.key not in refused]
                commit(partial(self.state.added, self.name, list_id, ok))
                report.failed += len(refused)
                report.added += sum(1 for k, _ in ok if k not in before)
                report.updated += sum(1 for k, _ in ok if k in before)
            if adds or removes:
                try:
                    rid = request_id(self.name, list_id, epoch, "run", [])
                    self.connector.finish(http, list_id, rid)
                except BatchFailed as exc:  # nothing took effect: all of it is resent next time
                    report.added = report.updated = report.removed = 0
                    report.failed = len(adds) + len(removes)
                    report.errors.append(f"finish: {exc}")
                    pending.clear()
        for fn in pending:
            fn()
        if report.failed == 0 and not report.errors:
            self.state.completed(self.name, list_id)
        log.info(
            "%s: synced list: %d added, %d updated, %d removed, %d unchanged, %d skipped, "
            "%d failed in %d requests (%d retries)",
            self.name,
            report.added,
            report.updated,
            report.removed,
            report.unchanged,
            report.skipped,
            report.failed,
            report.requests,
            report.retries,
        )
        return report

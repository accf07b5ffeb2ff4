"""Webhook delivery of triggers from the online store's outbox: signed, retried, dead-lettered.

Each due outbox row is POSTed as JSON ``{"id", "kind", "person_id", "payload", "created_at"}``
(the payload names segments, stages and categories: no personal data beyond the person id)
signed per the Standard Webhooks spec (``segone.signing``)::

    webhook-id:        msg_<outbox id>   the same on every retry
    webhook-timestamp: <unix seconds>
    webhook-signature: v1,<base64 HMAC-SHA256(key, id + "." + timestamp + "." + body)>

A 2xx answer marks the row delivered. Anything else (another status, a timeout, a refused
connection) counts one attempt and schedules the next after ``backoff_seconds * 2 ** attempts``
(times a random factor between 0.75 and 1.25, so that receivers coming back are not hit by
every retry at once); after ``max_attempts`` the row moves to the ``dead_letters`` table.
Delivery is at least once: a receiver should ignore an ``id`` it has already processed.

Receivers check a request with ``segone.signing.verify_headers(secret, headers, body)`` (or
any Standard Webhooks library): the signature must match the raw body and the timestamp must be
within five minutes of their clock (which stops an old request from being replayed).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx

from segone.signing import ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, verify
from segone.signing import headers as signed_headers

if TYPE_CHECKING:
    from segone.online.store.records import OutboxEntry

__all__ = [
    "ID_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WebhookDispatcher",
    "sign",
    "verify",
]

log = logging.getLogger("segone.webhooks")


def message_id(row: OutboxEntry) -> str:
    """The ``webhook-id`` of an outbox row: stable across retries, so receivers can de-dupe."""
    return f"msg_{row.id}"


def body_of(row: OutboxEntry) -> bytes:
    doc = {
        "id": row.id,
        "kind": row.kind,
        "person_id": row.person_id,
        "payload": row.payload or {},
        "created_at": row.created_at,
    }
    return json.dumps(doc, separators=(",", ":"), sort_keys=True, default=str).encode()


class WebhookDispatcher:
    """Delivers the outbox of an ``OnlineStore`` to one URL (see the module doc)."""

    def __init__(
        self,
        store: Any,
        url: str,
        secret: str,
        *,
        max_attempts: int = 5,
        backoff_seconds: float = 1.0,
        timeout: float = 5.0,
        batch: int = 50,
        concurrency: int = 8,
        poll_seconds: float = 0.5,
        random_state: int | None = None,
    ) -> None:
        self.store = store
        self.url = url
        self.secret = secret
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self.timeout = timeout
        self.batch = batch
        self.concurrency = concurrency
        self.poll_seconds = poll_seconds
        self._random = random.Random(random_state)
        self._client: httpx.AsyncClient | None = None

    def next_attempt(self, attempts: int, now: datetime) -> datetime:
        """When to try again after ``attempts`` failed attempts."""
        delay = self.backoff_seconds * 2**attempts * self._random.uniform(0.75, 1.25)
        return now + timedelta(seconds=delay)

    async def _post(self, row: OutboxEntry) -> str | None:
        """None when delivered, else what went wrong (no URL, no body: no secrets, no PII)."""
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout)
        body = body_of(row)
        headers = {
            "Content-Type": "application/json",
            **signed_headers(self.secret, message_id(row), body),
        }
        try:
            resp = await self._client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return type(exc).__name__
        return None if 200 <= resp.status_code < 300 else f"HTTP {resp.status_code}"

    async def run_once(self, now: datetime) -> int:
        """Try every due row once (up to ``batch``); returns how many were tried."""
        rows = await asyncio.to_thread(self._due, now)
        if not rows:
            return 0
        gate = asyncio.Semaphore(self.concurrency)

        async def attempt(row: OutboxEntry) -> str | None:
            async with gate:
                return await self._post(row)

        errors = await asyncio.gather(*(attempt(r) for r in rows))
        await asyncio.to_thread(self._record, rows, list(errors), now)
        failed = sum(e is not None for e in errors)
        if failed:
            log.warning("webhooks: %d of %d deliveries failed", failed, len(rows))
        return len(rows)

    def _due(self, now: datetime) -> list[OutboxEntry]:
        with self.store.read() as tx:
            return tx.outbox.due(now, self.batch)

    def _record(self, rows: list[OutboxEntry], errors: list[str | None], now: datetime) -> None:
        with self.store.write() as tx:
            for row, error in zip(rows, errors, strict=True):
                attempts = row.attempts
                if error is None:
                    tx.outbox.delivered(row.id)
                elif attempts + 1 >= self.max_attempts:
                    tx.outbox.dead(row.id, error)
                else:
                    tx.outbox.failed(row.id, error, self.next_attempt(attempts, now))

    async def run_forever(self, stop_event: asyncio.Event) -> None:
        """Deliver until ``stop_event`` is set; waits ``poll_seconds`` when nothing is due."""
        try:
            while not stop_event.is_set():
                try:
                    tried = await self.run_once(datetime.now(UTC))
                except Exception as exc:  # keep delivering; the row stays due
                    log.error("webhooks: delivery round failed (%s)", type(exc).__name__)
                    tried = 0
                if tried == 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop_event.wait(), self.poll_seconds)
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

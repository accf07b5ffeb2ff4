"""A generic SMS provider: one ``POST {base_url}/messages`` per person, never twice per list.

Body ``{"to": "+447700900123", "from": "<sender>", "body": "<text>"}`` with a Bearer key and an
``Idempotency-Key`` derived from (destination, list, person, text): the shape of Twilio-like
providers' messages endpoints. The text comes rendered from ``segone.campaigns`` in the member's
``fields["body"]`` (or ``body`` in the destination's config for one text for all).

An SMS list is a send, not a membership: "syncing" it messages every member not yet messaged
for this ``list_id`` (the ``sent`` table of ``SyncState``); members who left are not contacted
(nothing can be unsent), and a re-run after a failure only sends to those not yet marked sent.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable

import httpx

from segone.campaigns.destinations import normalise
from segone.campaigns.destinations.base import Member, SyncReport
from segone.campaigns.destinations.http import BatchFailed, Call, Http, HttpSettings
from segone.campaigns.destinations.sync_state import SyncState, request_id

log = logging.getLogger("segone.destinations")


class SmsDestination:
    """See the module doc."""

    def __init__(
        self,
        name: str,
        settings: HttpSettings,
        state: SyncState,
        *,
        api_key: str,
        sender: str,
        path: str = "/messages",
        body: str | None = None,
        default_country_code: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = name
        self.settings = settings
        self.state = state
        self.api_key = api_key
        self.sender = sender
        self.path = path
        self.body = body
        self.cc = default_country_code
        self.sleep = sleep
        self._rng = random.Random(settings.random_state)

    def sync(self, members: Iterable[Member], *, list_id: str) -> SyncReport:
        report = SyncReport(destination=self.name)
        todo: dict[str, tuple[str, str]] = {}
        for m in members:
            to = normalise.e164(m.phone, self.cc) if m.phone else None
            text = m.fields.get("body", self.body)
            if to is None or not text:
                report.skipped += 1
                continue
            todo[m.customer_id] = (to, str(text))
        done = self.state.was_sent(self.name, list_id, todo)
        report.unchanged = len(done)
        with httpx.Client(
            base_url=self.settings.base_url,
            timeout=self.settings.timeout,
            headers={"Authorization": f"Bearer {self.api_key}"},
        ) as client:
            http = Http(client, self.settings.retry, report, rng=self._rng, sleep=self.sleep)
            for key in sorted(todo.keys() - done):
                to, text = todo[key]
                message = {"to": to, "from": self.sender, "body": text}
                rid = request_id(self.name, list_id, 0, "sms", [key, to, text])
                try:
                    http(Call("POST", self.path, json=message), request_id=rid)
                except BatchFailed as exc:
                    report.failed += 1
                    report.errors.append(f"message: {exc}")
                    continue
                self.state.mark_sent(self.name, list_id, [key])
                report.added += 1
        log.info(
            "%s: %d messages sent, %d already sent, %d skipped, %d failed (%d retries)",
            self.name,
            report.added,
            report.unchanged,
            report.skipped,
            report.failed,
            report.retries,
        )
        return report

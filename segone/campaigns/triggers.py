"""Triggered arms fired from the live engine, as people change.

``segone serve`` records every real-time transition of a person (a segment entered, a stage
changed, a taste shift) in the online store's journey, and every event in its event log.
:class:`TriggerRunner` follows both (a cursor each, kept in ``campaigns/.state/triggers.sqlite``)
and, for each entry that is the ``trigger`` of a campaign's ``triggered`` arm::

    trigger: {transition: "lifecycle:at_risk"}     # stage_changed to at_risk
    trigger: {transition: vip}                      # segment_entered vip
    trigger: {transition: taste_shift}              # a taste shift
    trigger: {event: Cart Abandoned}                # a tracked event of that name

1. **once per person per trigger**: a person fired for an arm is not fired again by a new
   occurrence within the trigger's ``within_days`` (default 14), and the same journey entry or
   event is never fired twice (a restarted server resumes at its cursor);
2. **the arm is the person's**: the campaign's sticky hash (``holdouts.assign`` with the
   campaign's salt, as a batch run) must put the person in this arm;
3. **audience and reach on the live profile**: the audience's segment must be among the
   person's live segments and its rule must hold on the live profile (``top`` shares need the
   whole population and are not checked live); the first of the campaign's channels on which
   the person has a contact identifier, an explicit consent, no opt-out event
   (``audiences.OPT_OUT_EVENTS``), no suppression document and fewer than the frequency cap of
   live sends in its window; a person with an erased identifier is never considered;
4. **holdout respected**: a person in the global control group or the campaign holdout is
   recorded as exposed to control (group ``holdout`` / ``global_control``, nothing sent);
5. **sent** otherwise through the channel's transport (``send`` of the campaign, as a batch run:
   SMTP or a destination), one delivery list per firing, so a retry sends nobody twice.

Every firing (sent or held out) is a row of ``fired``; :func:`import_fired` copies the rows not
yet copied into the warehouse's ``campaign_assignments`` and ``campaign_exposures`` (run id
``<campaign>-live``), which is what ``segone campaign report`` measures. People are named by
their online person id, which is their customer id once published.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segone.campaigns.audiences import CHANNELS, OPT_OUT_EVENTS
from segone.campaigns.campaign import (
    Arm,
    Campaign,
    CampaignSettings,
    campaign_settings,
    load_campaigns,
)
from segone.campaigns.holdouts import TREATMENT, assign
from segone.campaigns.messages import outgoing
from segone.campaigns.run import Planned, _plain, _render, deliver, transport_config
from segone.exceptions import CampaignError

if TYPE_CHECKING:
    from segone.config import Settings
    from segone.online.store import OnlineStore
    from segone.store.base import Warehouse

log = logging.getLogger("segone.campaigns")
STATE_FILE = "triggers.sqlite"
_SUPPRESSION_NAME = {"phone": "sms", "web": "push"}


@dataclass(frozen=True)
class Fired:
    """One firing: who, which arm, what set it off, and what happened (no contact data)."""

    campaign: str
    arm: str
    person_id: str
    source: str  # "journey:<id>" or "event:<seq>"
    at: datetime
    group: str
    channel: str
    sent: bool
    message_id: str | None = None


@dataclass
class TriggerReport:
    fired: list[Fired] = field(default_factory=list)
    #: why candidates were not fired, counted (no personal data)
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1


class TriggerState:
    """The runner's cursors and firings (one SQLite file)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        with self._db() as db:
            db.executescript(
                """
                CREATE TABLE IF NOT EXISTS cursor (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
                CREATE TABLE IF NOT EXISTS fired (
                    campaign TEXT NOT NULL, arm TEXT NOT NULL, person_id TEXT NOT NULL,
                    source TEXT NOT NULL, at TEXT NOT NULL, grp TEXT NOT NULL,
                    channel TEXT NOT NULL, sent INTEGER NOT NULL, message_id TEXT,
                    imported INTEGER NOT NULL DEFAULT 0,
                    PRIMARY KEY (campaign, arm, person_id, source));
                CREATE INDEX IF NOT EXISTS fired_person ON fired (person_id, channel, at);
                """
            )

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        try:
            with db:
                yield db
        finally:
            db.close()

    def cursor(self, name: str) -> int:
        with self._db() as db:
            row = db.execute("SELECT value FROM cursor WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def set_cursor(self, name: str, value: int) -> None:
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO cursor VALUES (?, ?)", (name, value))

    def last_fired(self, campaign: str, arm: str, person_id: str) -> datetime | None:
        with self._db() as db:
            row = db.execute(
                "SELECT max(at) FROM fired WHERE campaign = ? AND arm = ? AND person_id = ?",
                (campaign, arm, person_id),
            ).fetchone()
        return datetime.fromisoformat(row[0]) if row and row[0] else None

    def sends_since(self, person_id: str, channel: str, since: datetime) -> int:
        with self._db() as db:
            row = db.execute(
                "SELECT count(*) FROM fired WHERE person_id = ? AND channel = ? AND sent = 1 "
                "AND at > ?",
                (person_id, channel, since.isoformat()),
            ).fetchone()
        return int(row[0])

    def add(self, f: Fired) -> bool:
        """Record a firing; False when this (campaign, arm, person, source) already was."""
        with self._db() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO fired (campaign, arm, person_id, source, at, grp, channel, "
                "sent, message_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    f.campaign,
                    f.arm,
                    f.person_id,
                    f.source,
                    f.at.isoformat(),
                    f.group,
                    f.channel,
                    int(f.sent),
                    f.message_id,
                ),
            )
            return cur.rowcount == 1

    def mark_sent(self, f: Fired, sent: bool) -> None:
        with self._db() as db:
            db.execute(
                "UPDATE fired SET sent = ? WHERE campaign = ? AND arm = ? AND person_id = ? "
                "AND source = ?",
                (int(sent), f.campaign, f.arm, f.person_id, f.source),
            )

    def not_imported(self) -> list[Fired]:
        with self._db() as db:
            rows = db.execute(
                "SELECT campaign, arm, person_id, source, at, grp, channel, sent, message_id "
                "FROM fired WHERE imported = 0 ORDER BY at"
            ).fetchall()
        return [
            Fired(c, a, p, s, datetime.fromisoformat(t), g, ch, bool(x), m)
            for c, a, p, s, t, g, ch, x, m in rows
        ]

    def mark_imported(self, fired: Sequence[Fired]) -> None:
        with self._db() as db:
            db.executemany(
                "UPDATE fired SET imported = 1 WHERE campaign = ? AND arm = ? AND person_id = ? "
                "AND source = ?",
                [(f.campaign, f.arm, f.person_id, f.source) for f in fired],
            )


def _matches(trigger: Mapping[str, Any], entry: Mapping[str, Any]) -> bool:
    """Whether a journey entry (``kind`` and its ``detail`` payload) is this trigger."""
    want = trigger.get("transition")
    if want is None:
        return False
    want = str(want)
    kind, d = entry["kind"], entry.get("detail") or {}
    if kind == "segment_entered":
        return d.get("segment") == want
    if kind == "stage_changed":
        return want in (f"lifecycle:{d.get('to')}", f"stage:{d.get('to')}")
    return kind == want  # taste_shift


class TriggerRunner:
    """Fires the triggered arms of a project's campaigns from the online store (module doc)."""

    def __init__(
        self,
        root: Path,
        settings: Settings,
        store: OnlineStore,
        *,
        campaigns: Mapping[str, Campaign] | None = None,
        campaign_config: CampaignSettings | None = None,
        clock: Callable[[], datetime] | None = None,
        batch: int = 1000,
    ) -> None:
        self.root = Path(root)
        self.settings = settings
        self.store = store
        found = load_campaigns(self.root) if campaigns is None else dict(campaigns)
        self.campaigns = {
            n: c for n, c in found.items() if any(a.kind == "triggered" for a in c.arms)
        }
        self.config = campaign_config or campaign_settings(self.root)
        self.state = TriggerState(self.root / "campaigns" / ".state" / STATE_FILE)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.batch = batch
        self._attrs: dict[str, Any] | None = None

    @property
    def active(self) -> bool:
        return bool(self.campaigns)

    # -- one pass ----------------------------------------------------------------------------------
    def run_once(self) -> TriggerReport:
        """Fire what the journey and the event log hold since the last pass."""
        report = TriggerReport()
        if not self.campaigns:
            return report
        j0, e0 = self.state.cursor("journey"), self.state.cursor("events")
        wants_events = any("event" in a.trigger for c in self.campaigns.values() for a in c.arms)
        with self.store.read() as tx:
            journey = [j.as_dict() for j in tx.journey.after(j0, self.batch)]
            events = tx.events.after(e0, self.batch) if wants_events else []
        todo: list[tuple[Campaign, Arm, str, str, datetime]] = []
        for entry in journey:
            for c in self.campaigns.values():
                for arm in c.arms:
                    if arm.kind == "triggered" and _matches(arm.trigger, entry):
                        at = _ts(entry.get("ts")) or self.clock()
                        todo.append((c, arm, str(entry["person_id"]), f"journey:{entry['id']}", at))
        for seq, pid, msg in events:
            name = msg.get("event") if msg.get("type", "track") == "track" else None
            for c in self.campaigns.values():
                for arm in c.arms:
                    if arm.kind == "triggered" and name and arm.trigger.get("event") == name:
                        at = _ts(msg.get("timestamp")) or self.clock()
                        todo.append((c, arm, str(pid), f"event:{seq}", at))
        by_delivery: dict[tuple[str, str, str], list[tuple[Fired, Planned]]] = {}
        for c, arm, pid, source, at in todo:
            got = self._consider(c, arm, pid, source, at, report)
            if got is not None:
                f, planned = got
                report.fired.append(f)
                if f.sent:
                    by_delivery.setdefault((c.name, arm.name, f.channel), []).append((f, planned))
        for (cname, _arm, ch), rows in by_delivery.items():
            self._send(self.campaigns[cname], ch, rows)
        if journey:
            self.state.set_cursor("journey", int(journey[-1]["id"]))
        if events:
            self.state.set_cursor("events", int(events[-1][0]))
        return report

    def _consider(
        self, c: Campaign, arm: Arm, pid: str, source: str, at: datetime, report: TriggerReport
    ) -> tuple[Fired, Planned] | None:
        within = timedelta(days=float(arm.trigger.get("within_days", 14)))
        last = self.state.last_fired(c.name, arm.name, pid)
        if last is not None and at - last < within:
            report.skip("fired already")
            return None
        a = assign(
            [pid],
            salt=c.hash_salt,
            holdout=c.holdout,
            arms=c.arm_weights(),
            settings=self.config.holdouts,
        )
        if str(a.arm[0]) != arm.name:
            report.skip("in another arm")
            return None
        group = str(a.group[0])
        reach = self._reach(c, pid, at)
        if isinstance(reach, str):
            report.skip(reach)
            return None
        ch, contact, profile = reach
        sent = group == TREATMENT
        mid = f"<{c.name}.{pid}.{uuid.uuid4().hex[:12]}@segone>" if sent else None
        f = Fired(c.name, arm.name, pid, source, at, group, ch, sent, mid)
        if not self.state.add(f):
            report.skip("fired already")
            return None
        fields = {k: _plain(profile.get(k)) for k in c.fields}
        p = Planned(
            pid,
            contact,
            group,
            arm.name,
            fields,
            offer=dict(arm.offer),
            reason=str(arm.offer.get("reason", "")),
            send_at=at,
            channel=ch,
        )
        return f, p

    def _reach(self, c: Campaign, pid: str, at: datetime) -> tuple[str, str, dict[str, Any]] | str:
        """(channel, contact, live profile) of the first channel the person may be reached
        on, or why there is none."""
        from segone.decisions.channel import consented, suppressed
        from segone.identity.traces import identifier_hashes
        from segone.live.profile import safe_view

        with self.store.read() as tx:
            docs = tx.docs.of(pid, ("published", "person"))
            ids = tx.identity.identifiers_of(pid)
            if not ids and not docs:
                return "unknown person"
            salts = tx.erasure.salts()
            if (
                salts
                and tx.erasure.any_erased()
                and tx.erasure.erased_among(list(identifier_hashes(ids, salts)))
            ):
                return "erased"
            supp = tx.docs.get("suppression", ids)
            events = tx.events.recent(pid)
        published, live = docs.get("published") or {}, docs.get("person") or {}
        profile = safe_view(published or None, live or None, at, person_id=pid, identifiers=ids)
        segments = set((live.get("rt") or {}).get("segments", published.get("segments", [])))
        if c.audience.segment is not None and c.audience.segment not in segments:
            return "not in the audience"
        if c.audience.rule is not None and not self._rule_holds(c, profile, events, at):
            return "not in the audience"
        names = {str(e.get("event") or e.get("name") or "") for e in events}
        why = "no reachable channel"
        for ch in c.channels:
            spec = CHANNELS[ch]
            contact = next(
                (i.partition(":")[2] for i in ids if i.startswith(spec.id_type + ":")), None
            )
            if not contact:
                why = f"no {spec.id_type}"
                continue
            col = next((x for x in spec.consent if x in profile), spec.consent[0])
            if not consented(profile, col.removeprefix("consent_")):
                why = "no consent"
                continue
            if names & set(OPT_OUT_EVENTS.get(_SUPPRESSION_NAME.get(ch, ch), ())):
                why = "opted out"
                continue
            if (
                _SUPPRESSION_NAME.get(ch, ch)
                in suppressed(supp, [_SUPPRESSION_NAME.get(ch, ch)])[0]
            ):
                why = "suppressed"
                continue
            since = at - timedelta(days=c.caps.days)
            if self.state.sends_since(pid, ch, since) >= c.caps.max_contacts:
                why = "capped"
                continue
            return ch, contact, profile
        return why

    def _rule_holds(
        self,
        c: Campaign,
        profile: Mapping[str, Any],
        events: Sequence[Mapping[str, Any]],
        at: datetime,
    ) -> bool:
        import ibis.expr.datatypes as dt

        from segone.live.profile import PROFILE_TYPES
        from segone.segments.rules import rule_from_obj
        from segone.segments.rules.python import evaluate

        if self._attrs is None:
            self._attrs = {k: dt.dtype(v) for k, v in PROFILE_TYPES.items()}
        rule = rule_from_obj(c.audience.rule, self._attrs, name="audience")
        return evaluate(rule, profile, events=events, now=at)

    def _send(self, c: Campaign, ch: str, rows: list[tuple[Fired, Planned]]) -> None:
        if not transport_config(c, ch):
            log.warning("campaign %s: no transport for channel %s; nothing sent", c.name, ch)
            for f, _ in rows:
                self.state.mark_sent(f, False)
            return
        msgs = []
        if ch == "email" and c.message is not None:
            for f, p in rows:
                r = _render(c.message, p, self.config.secret)
                msgs.append(outgoing(p.customer_id, p.contact, r, f.message_id or ""))
        # one delivery list per firing: a retry of the same firing sends nobody twice
        for f, p in rows:
            mine = [m for m in msgs if m.customer_id == p.customer_id]
            r = deliver(
                self.root,
                c,
                ch,
                [p],
                mine,
                list_id=f"{c.name}.{f.arm}.{f.source}",
                settings=self.config,
            )
            if r.failed:
                self.state.mark_sent(f, False)

    # -- in the server -----------------------------------------------------------------------------
    async def run_forever(self, stop: asyncio.Event, interval: float = 1.0) -> None:
        """``run_once`` every ``interval`` seconds (off the event loop) until ``stop``."""
        while not stop.is_set():
            try:
                r = await asyncio.to_thread(self.run_once)
                if r.fired:
                    log.info(
                        "triggered campaigns: %d fired (%d sent)",
                        len(r.fired),
                        sum(f.sent for f in r.fired),
                    )
            except Exception as exc:  # keep serving; say what failed, not about whom
                log.error("triggered campaigns: a pass failed (%s: %s)", type(exc).__name__, exc)
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)


def _ts(v: Any) -> datetime | None:
    if isinstance(v, datetime):
        return v if v.tzinfo else v.replace(tzinfo=UTC)
    if isinstance(v, str) and v:
        try:
            t = datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            return None
        return t if t.tzinfo else t.replace(tzinfo=UTC)
    return None


def import_fired(wh: Warehouse, root: Path) -> int:
    """Copy the live firings not yet copied into ``campaign_assignments`` and
    ``campaign_exposures`` (run id ``<campaign>-live``); returns how many."""
    from segone.campaigns.measure import record_assignments, record_exposures

    path = Path(root) / "campaigns" / ".state" / STATE_FILE
    if not path.exists():
        return 0
    state = TriggerState(path)
    rows = state.not_imported()
    if not rows:
        return 0
    with wh.transaction():
        for f in rows:
            run_id = f"{f.campaign}-live"
            record_assignments(
                wh,
                campaign=f.campaign,
                run_id=run_id,
                channel=f.channel,
                at=f.at,
                customer_ids=[f.person_id],
                groups=[f.group],
                arms=[f.arm],
            )
            if f.group == TREATMENT:
                record_exposures(
                    wh,
                    campaign=f.campaign,
                    run_id=run_id,
                    channel=f.channel,
                    at=f.at,
                    rows=[(f.person_id, f.arm, f.sent, f.message_id)],
                )
    state.mark_imported(rows)
    return len(rows)


def extend_api(app: Any, settings: Settings, engine: Any) -> None:
    """For ``segone serve``: run a :class:`TriggerRunner` beside the API while it serves, when
    the project has a campaign with a triggered arm (``create_app(extend=...)``)."""
    from contextlib import asynccontextmanager

    if settings.root is None:
        return
    try:
        runner = TriggerRunner(Path(settings.root), settings, engine.store, clock=engine.clock)
    except CampaignError as exc:  # a broken campaign file must not stop the server
        log.warning("triggered campaigns not run: %s", exc)
        return
    if not runner.active:
        return
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any) -> Any:
        async with inner(a) as state:
            stop = asyncio.Event()
            task = asyncio.create_task(runner.run_forever(stop))
            try:
                yield state
            finally:
                stop.set()
                await task

    app.router.lifespan_context = lifespan

"""Plan and run a campaign: audience → holdouts → per-arm offers and timing → messages → send.

A plan is computed without writing anything (``--dry-run`` renders every message from it);
running it stores the assignments of everyone (held-out people included, with the time) and
the exposures of the people contacted, then hands the messages to the transport.

Arms, per person:

* ``mass``: the arm's offer and the most bought products of its category, the same for all;
* ``segment``: the offer of the first listed segment the person is in (``default`` else), with
  that offer's category's most bought products;
* ``one_to_one``: the person's own recommendations from the last build (names, the reason
  given by the recommender), sent at the person's own time: two days before their next
  purchase is due (last order + their mean gap between orders), within the schedule horizon;
* ``triggered``: only people who had the trigger (a transition into a segment or stage, or an
  event) in its ``within_days``; the others of the arm are dropped from the run before
  anything is stored, in both the treated and the held-out group, so the arm is measured
  against held-out people who had the same trigger.

Channels. A campaign with ``channels: [email, sms, ...]`` builds one audience per channel
(each with its own funnel: contact, consent, opt-outs, suppression, erasure, caps) and runs on
everyone reachable on at least one. Each person then gets one channel:

* a ``one_to_one`` arm reaches them on their **preferred** channel (:func:`preferred_channels`:
  a ``preferred_channel`` profile column when a source provides one, else the channel they
  engage with most by the profile's per-channel rates — ``p_email_click`` or
  ``email_click_rate`` for e-mail, ``p_<channel>_click`` / ``<channel>_click_rate`` for the
  others when present), falling back to the next one they are reachable on;
* the other arms reach everyone on the first channel of the campaign's list they are
  reachable on (the same rule for all, which is what makes them non-personal).

Every destination receives only the people of its channel (``send: {email: {smtp: ...},
sms: {destination: ...}}``), and exposures are recorded under the channel used, so frequency
caps count per channel.
"""

from __future__ import annotations

import importlib
import json
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import ibis
import numpy as np
import pandas as pd
import pyarrow as pa

from segone.campaigns.audiences import Audience, build_audience, members
from segone.campaigns.campaign import Campaign, CampaignSettings
from segone.campaigns.destinations.base import OutgoingEmail, SyncReport
from segone.campaigns.holdouts import GLOBAL, HOLDOUT, TREATMENT, assign, expected_shares, srm
from segone.campaigns.measure import record_assignments, record_exposures
from segone.campaigns.messages import outgoing, render
from segone.exceptions import RunError
from segone.schema import TS
from segone.segments.rules import Catalogue
from segone.store.base import Warehouse

_TIMING = ("last_order_at", "mean_gap_days")


@dataclass
class Planned:
    """One person of a run."""

    customer_id: str
    contact: str
    group: str
    arm: str
    fields: dict[str, Any]
    offer: dict[str, Any] = field(default_factory=dict)
    products: list[dict[str, Any]] = field(default_factory=list)
    reason: str = ""
    send_at: datetime | None = None
    #: the channel the person is reached on (one of the campaign's ``channels``)
    channel: str = ""


@dataclass
class Plan:
    campaign: Campaign
    at: datetime
    audience: Audience
    people: list[Planned]
    not_triggered: int = 0
    #: the audience of each of the campaign's channels (``audience`` is the first's)
    audiences: dict[str, Audience] = field(default_factory=dict)
    #: people reachable on at least one channel (the run's population)
    reachable: int = 0
    #: what each channel's transport reported, once sent
    reports: dict[str, SyncReport] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        out = {TREATMENT: 0, HOLDOUT: 0, GLOBAL: 0}
        for p in self.people:
            out[p.group] += 1
        return out

    def per_channel(self) -> dict[str, dict[str, int]]:
        """Per channel: its audience's last step (reachable on it) and how many people of
        each group were given it."""
        out: dict[str, dict[str, int]] = {}
        for ch, aud in (self.audiences or {self.audience.channel: self.audience}).items():
            out[ch] = {"reachable": aud.steps[-1].count, TREATMENT: 0, HOLDOUT: 0, GLOBAL: 0}
        for p in self.people:
            ch = p.channel or self.audience.channel
            out.setdefault(ch, {"reachable": 0, TREATMENT: 0, HOLDOUT: 0, GLOBAL: 0})
            out[ch][p.group] += 1
        return out

    def funnel(self) -> str:
        c = self.counts()
        if len(self.audiences) > 1:
            per = self.per_channel()
            parts = [f"{ch}: {a.funnel()}" for ch, a in self.audiences.items()]
            chosen = ", ".join(f"{per[ch][TREATMENT]:,} on {ch}" for ch in self.audiences)
            return (
                " | ".join(parts)
                + f" ⇒ {self.reachable:,} reachable on some channel"
                + (
                    f" → {self.not_triggered:,} without their trigger left out"
                    if self.not_triggered
                    else ""
                )
                + f" → {c[HOLDOUT] + c[GLOBAL]:,} held out ({c[HOLDOUT]:,} campaign holdout, "
                f"{c[GLOBAL]:,} global control) → {c[TREATMENT]:,} to contact ({chosen})"
            )
        parts = [self.audience.funnel()]
        if self.not_triggered:
            parts.append(f"{self.not_triggered:,} without their trigger left out")
        parts.append(
            f"{c[HOLDOUT] + c[GLOBAL]:,} held out ({c[HOLDOUT]:,} campaign holdout, "
            f"{c[GLOBAL]:,} global control)"
        )
        parts.append(f"{c[TREATMENT]:,} to contact")
        return " → ".join(parts)

    def per_arm(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {a.name: {} for a in self.campaign.arms}
        for p in self.people:
            out[p.arm][p.group] = out[p.arm].get(p.group, 0) + 1
        return out

    def treated(self) -> list[Planned]:
        return [p for p in self.people if p.group == TREATMENT]


def product_names(wh: Warehouse) -> ibis.Table:
    p = wh.table("products")
    return p.group_by("product_id").aggregate(
        name=p.name.max(), category=p.category.max(), price=p.price.max()
    )


def popular_products(wh: Warehouse, category: str | None, n: int) -> list[dict[str, Any]]:
    """The ``n`` most bought products (of ``category`` and below, when given), by name."""
    ol = wh.table("order_lines")
    if category:
        ol = ol.filter((ol.category == category) | ol.category.startswith(category + " > "))
    top = ol.group_by("product_id").aggregate(units=ol.quantity.sum())
    names = product_names(wh)
    j = top.join(names, "product_id").order_by([ibis.desc("units"), "product_id"]).limit(n)
    df = wh.execute(j.select("name", "category", "price"))
    return [{str(k): v for k, v in r.items()} for r in df.to_dict("records")]


def _recommended(wh: Warehouse, ids: Sequence[str], n: int) -> dict[str, list[dict[str, Any]]]:
    if not ids or "recommendations" not in wh.tables():
        return {}
    t = wh.stage(
        "_segone_cmp_ids", pa.table({"customer_id": pa.array(list(ids), pa.string())}), append=False
    )
    r = wh.table("recommendations")
    r = r.join(t, "customer_id").filter(r["rank"] <= n)
    j = r.join(product_names(wh), "product_id")
    df = wh.execute(j.select("customer_id", "rank", "name", "category", "price", "reason"))
    out: dict[str, list[dict[str, Any]]] = {}
    for row in df.sort_values(["customer_id", "rank"]).itertuples(index=False):
        out.setdefault(str(row.customer_id), []).append(
            {"name": row.name, "category": row.category, "price": row.price, "reason": row.reason}
        )
    return out


def _triggered(
    wh: Warehouse, trigger: Mapping[str, Any], at: datetime, ids: Sequence[str]
) -> set[str]:
    """Who of ``ids`` had the trigger in its ``within_days`` (default 14) before ``at``."""
    from segone.segments.batch import customer_events

    days = float(trigger.get("within_days", 14))
    since = ibis.literal(at - timedelta(days=days), type=TS)
    until = ibis.literal(at, type=TS)
    if "transition" in trigger:
        if "transitions" not in wh.tables():
            return set()
        t = wh.table("transitions")
        t = t.filter(
            (t.to_segment == str(trigger["transition"])) & (t.at > since) & (t.at <= until)
        )
        who = t.select("customer_id")
    else:
        ev = customer_events(wh)
        ev = ev.filter(
            (ev.name == str(trigger["event"])) & (ev.timestamp > since) & (ev.timestamp <= until)
        )
        who = ev.select("customer_id")
    got = set(wh.execute(who.distinct()).customer_id.astype(str))
    return got & set(ids)


def _segment_members(
    wh: Warehouse, catalogue: Catalogue | None, names: Sequence[str], at: datetime, ids: set[str]
) -> dict[str, set[str]]:
    from segone.segments.batch import memberships
    from segone.segments.rules import Catalogue as Cat

    wanted = [n for n in names if n != "default"]
    if not wanted:
        return {}
    if catalogue is None:
        raise RunError("a segment arm needs the segment catalogue")
    sub = Cat()
    for n in wanted:
        try:
            sub.add(catalogue[n])
        except KeyError:
            raise RunError(f"segment arm: unknown segment {n!r}") from None
    # segments referring to other segments need those too
    for seg in catalogue:
        if seg.name not in {s.name for s in sub}:
            sub.add(seg)
    m = wh.execute(memberships(wh, sub, at).filter(lambda t: t.segment.isin(wanted)))
    out: dict[str, set[str]] = {n: set() for n in wanted}
    for cid, seg in zip(m.customer_id.astype(str), m.segment.astype(str), strict=True):
        if cid in ids:
            out[seg].add(cid)
    return out


#: per-channel engagement columns a profile may have, best evidence first
def _engagement_columns(channel: str) -> tuple[str, ...]:
    name = "sms" if channel == "phone" else channel
    return (f"p_{name}_click", f"{name}_click_rate", f"{name}_open_rate")


def preferred_channels(row: Mapping[str, Any], channels: Sequence[str]) -> list[str]:
    """``channels`` ordered by the person's preference (see the module docstring): an explicit
    ``preferred_channel`` first, then channels by their engagement rate (highest first), then
    channels with no rate in the campaign's order."""
    pref = row.get("preferred_channel")
    rate: dict[str, float] = {}
    for ch in channels:
        for col in _engagement_columns(ch):
            v = _plain(row.get(col))
            if isinstance(v, int | float) and not isinstance(v, bool) and v == v:
                rate[ch] = float(v)
                break
    order = {ch: k for k, ch in enumerate(channels)}

    def key(ch: str) -> tuple[int, float, int]:
        return (0 if pref == ch else 1, -rate.get(ch, -1.0), order[ch])

    return sorted(channels, key=key)


def plan(
    wh: Warehouse,
    campaign: Campaign,
    *,
    at: datetime,
    settings: CampaignSettings | None = None,
    catalogue: Catalogue | None = None,
    suppressions: Mapping[str, Any] | None = None,
    online_erased: Sequence[str] = (),
    online_salts: Sequence[str] = (),
    only: str | None = None,
) -> Plan:
    """Everyone the run would assign and what each would get (writes nothing)."""
    s = settings or CampaignSettings()
    have = set(wh.table("profiles").columns) if "profiles" in wh.tables() else set()
    internal = [f for f in _TIMING if f not in campaign.fields and f in have]
    channels = list(campaign.channels)
    if len(channels) > 1:  # what the channel preference reads
        wanted = ["preferred_channel"] + [c for ch in channels for c in _engagement_columns(ch)]
        internal += [f for f in wanted if f in have and f not in campaign.fields]
    auds: dict[str, Audience] = {}
    frames: dict[str, pd.DataFrame] = {}
    for ch in channels:
        auds[ch] = build_audience(
            wh,
            campaign.audience,
            ch,
            as_of=at,
            catalogue=catalogue,
            suppressions=suppressions,
            online_erased=online_erased,
            online_salts=online_salts,
            caps=campaign.caps,
            fields=[*campaign.fields, *internal],
        )
        reach = auds[ch].reachable
        if only is not None:
            reach = reach.filter(reach.customer_id == only)
        frames[ch] = wh.execute(reach.order_by("customer_id"))
    aud = auds[channels[0]]
    # everyone reachable on some channel, each with their contact on every channel they have
    contact_on: dict[str, dict[str, str]] = {}
    rows_of: dict[str, dict[str, Any]] = {}
    for ch in reversed(channels):  # the first channel's row wins for the profile fields
        for rec in frames[ch].to_dict("records"):
            cid = str(rec["customer_id"])
            contact_on.setdefault(cid, {})[ch] = str(rec["contact"])
            rows_of[cid] = {str(k): v for k, v in rec.items()}
    ids = sorted(contact_on)
    df = pd.DataFrame([rows_of[c] for c in ids], columns=frames[channels[0]].columns)
    a = assign(
        ids,
        salt=campaign.hash_salt,
        holdout=campaign.holdout,
        arms=campaign.arm_weights(),
        settings=s.holdouts,
    )
    arm_of = dict(zip(ids, a.arm, strict=True))
    keep = np.ones(len(ids), dtype=bool)
    arms = {x.name: x for x in campaign.arms}
    for arm in campaign.arms:
        if arm.kind != "triggered":
            continue
        in_arm = [c for c in ids if arm_of[c] == arm.name]
        fired = _triggered(wh, arm.trigger, at, in_arm)
        for k, c in enumerate(ids):
            if arm_of[c] == arm.name and c not in fired:
                keep[k] = False
    not_triggered = int((~keep).sum())
    idset = set(ids)
    seg_names = [n for x in campaign.arms if x.kind == "segment" for n in x.offers]
    seg_members = _segment_members(wh, catalogue, seg_names, at, idset) if seg_names else {}
    n_products = max((x.products for x in campaign.arms), default=3)
    one_ids = [c for k, c in enumerate(ids) if keep[k] and arms[arm_of[c]].kind == "one_to_one"]
    recs = _recommended(wh, one_ids, n_products)
    popular: dict[str | None, list[dict[str, Any]]] = {}

    def pop(cat: str | None, n: int) -> list[dict[str, Any]]:
        if cat not in popular:
            popular[cat] = popular_products(wh, cat, n_products)
        return popular[cat][:n]

    records = df.to_dict("records")
    people: list[Planned] = []
    horizon = timedelta(days=campaign.horizon_days)
    for k, row in enumerate(records):
        if not keep[k]:
            continue
        cid = ids[k]
        arm = arms[arm_of[cid]]
        fields = {f: _plain(row.get(f)) for f in campaign.fields}
        order = (
            preferred_channels({str(k2): v for k2, v in row.items()}, channels)
            if arm.kind == "one_to_one"
            else channels
        )
        ch = next(c for c in order if c in contact_on[cid])
        p = Planned(
            cid, contact_on[cid][ch], str(a.group[k]), arm.name, fields, send_at=at, channel=ch
        )
        if arm.kind in ("mass", "triggered"):
            p.offer = dict(arm.offer)
            p.products = pop(arm.offer.get("category"), arm.products)
            p.reason = str(arm.offer.get("reason", ""))
        elif arm.kind == "segment":
            chosen = next(
                (n for n in arm.offers if n != "default" and cid in seg_members.get(n, set())),
                "default",
            )
            p.offer = dict(arm.offers.get(chosen, {}))
            p.offer.setdefault("segment", chosen)
            p.products = pop(p.offer.get("category"), arm.products)
            p.reason = str(
                p.offer.get("reason", f"for our {chosen} customers" if chosen != "default" else "")
            )
        else:  # one_to_one
            own = recs.get(cid, [])[: arm.products]
            p.products = [{k2: v for k2, v in r.items() if k2 != "reason"} for r in own]
            p.offer = dict(arm.offer)
            p.reason = own[0]["reason"] if own and own[0].get("reason") else ""
            if not own:
                p.products = pop(
                    _plain(row.get("top_category")) if "top_category" in row else None, arm.products
                )
            p.send_at = _due({str(k): v for k, v in row.items()}, at, horizon)
        people.append(p)
    return Plan(campaign, at, aud, people, not_triggered, auds, len(ids))


def _plain(v: Any) -> Any:
    if isinstance(v, float) and v != v:
        return None
    if v is pd.NaT:
        return None
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, pd.Timestamp):
        return v.to_pydatetime()
    return v


def _due(row: Mapping[str, Any], at: datetime, horizon: timedelta) -> datetime:
    """Two days before the person's next purchase is due, within [at, at + horizon]."""
    last, gap = _plain(row.get("last_order_at")), _plain(row.get("mean_gap_days"))
    if not isinstance(last, datetime) or not isinstance(gap, int | float) or gap <= 0:
        return at
    due = last + timedelta(days=float(gap)) - timedelta(days=2)
    if due.tzinfo is None:
        due = due.replace(tzinfo=at.tzinfo)
    while due < at:  # overdue: the next cycle from now, so the rhythm is kept
        due += timedelta(days=float(gap))
    return min(due, at + horizon)


def messages(plan_: Plan, settings: CampaignSettings | None = None) -> Iterable[OutgoingEmail]:
    """The rendered message of every treated person (nothing is sent)."""
    tpl = plan_.campaign.message
    if tpl is None:
        return
    secret = (settings or CampaignSettings()).secret
    for p in plan_.treated():
        if len(plan_.campaign.channels) > 1 and p.channel != "email":
            continue  # the template is the e-mail; other channels' people go as members
        r = render(
            tpl,
            customer_id=p.customer_id,
            fields=p.fields,
            offer=p.offer,
            products=p.products,
            reason=p.reason,
            arm=p.arm,
            secret=secret,
        )
        yield outgoing(
            p.customer_id,
            p.contact,
            r,
            f"<{plan_.campaign.name}.{p.customer_id}.{uuid.uuid4().hex[:12]}@segone>",
        )


@dataclass
class RunResult:
    run_id: str
    plan: Plan
    sent: int
    report: SyncReport | None
    srm_p: float

    def summary(self) -> str:
        how = (
            f"{self.report.destination}: {self.sent:,} sent, {self.report.failed:,} failed"
            if self.report
            else f"{self.sent:,} contacts recorded (no transport configured: nothing delivered)"
        )
        return f"run {self.run_id}: {self.plan.funnel()}; {how}; SRM p = {self.srm_p:.3g}"


Sender = Callable[[Plan, Iterable[OutgoingEmail]], SyncReport]


def _render(tpl: Any, p: Planned, secret: str) -> Any:
    return render(
        tpl,
        customer_id=p.customer_id,
        fields=p.fields,
        offer=p.offer,
        products=p.products,
        reason=p.reason,
        arm=p.arm,
        secret=secret,
    )


def transport_config(campaign: Campaign, channel: str) -> dict[str, Any]:
    """The ``send`` configuration of ``channel`` (empty: none)."""
    cfg = campaign.send
    if channel in cfg:
        return dict(cfg[channel] or {})
    return dict(cfg) if channel == campaign.channel and ({"smtp", "destination"} & set(cfg)) else {}


def deliver(
    root: Path,
    campaign: Campaign,
    ch: str,
    people: Sequence[Planned],
    msgs: Sequence[OutgoingEmail],
    *,
    list_id: str,
    settings: CampaignSettings | None = None,
) -> SyncReport:
    """Hand ``people`` (all given channel ``ch``) to the channel's transport: e-mail
    ``msgs`` over SMTP, or members (with the rendered text as an SMS body) to a destination.
    Re-delivering the same ``list_id`` sends nobody twice (the transports' state)."""
    cfg = transport_config(campaign, ch)
    if "smtp" in cfg:
        # the transport lives in segone.campaigns.destinations (imported late: optional)
        open_sender = importlib.import_module("segone.campaigns.destinations").open_sender
        state = root / "campaigns" / ".state"
        # the state records who was mailed, so a re-run of the same run never mails twice
        sender = open_sender(dict(cfg["smtp"]), state_dir=state)
        sent = sender.send(list(msgs), list_id=list_id)
        return SyncReport(
            destination="smtp",
            added=sent.sent,
            skipped=sent.skipped,
            failed=sent.failed,
            errors=list(sent.errors),
        )
    if "destination" in cfg:
        open_destination = importlib.import_module("segone.campaigns.destinations").open_destination
        d = dict(cfg["destination"])
        dest = open_destination(
            str(d["kind"]), dict(d.get("config") or {}), state_dir=root / "campaigns" / ".state"
        )
        fields: list[str] = list(campaign.fields)
        rows = [{"customer_id": p.customer_id, "contact": p.contact, **p.fields} for p in people]
        tpl = campaign.message
        if ch in ("sms", "phone") and tpl is not None:
            # an SMS is the template's text, rendered for the person
            secret = (settings or CampaignSettings()).secret
            for row, p in zip(rows, people, strict=True):
                row["body"] = _render(tpl, p, secret).text
            fields.append("body")
        synced: SyncReport = dest.sync(members(rows, ch, fields), list_id=list_id)
        return synced
    return SyncReport(
        destination=f"none ({ch})",
        failed=len(people),
        errors=[f"no transport for channel {ch}: add send.{ch}"],
    )


def default_sender(root: Path, settings: CampaignSettings | None = None) -> Sender | None:
    """The transport a campaign's ``send`` asks for: SMTP for e-mail or a destination.

    ``send`` is either one transport (``{smtp: ...}`` or ``{destination: ...}``) for the
    campaign's ``channel``, or one per channel (``{email: {smtp: ...}, sms: {destination:
    ...}}``); each transport gets only the people given its channel. People of a channel
    without a transport are counted as failed (nothing is delivered to them)."""

    def send(plan_: Plan, msgs: Iterable[OutgoingEmail]) -> SyncReport:
        c = plan_.campaign
        cfg = c.send
        if not ({"smtp", "destination"} & set(cfg) or set(c.channels) & set(cfg)):
            raise RunError("no transport")
        by_channel: dict[str, list[Planned]] = {}
        for p in plan_.treated():
            by_channel.setdefault(p.channel or c.channel, []).append(p)
        msg_list = list(msgs)
        total: SyncReport | None = None
        for ch, people in by_channel.items():
            mine = {p.customer_id for p in people}
            list_id = c.name if ch == c.channel else f"{c.name}.{ch}"
            r = deliver(
                root,
                c,
                ch,
                people,
                [m for m in msg_list if m.customer_id in mine],
                list_id=list_id,
                settings=settings,
            )
            plan_.reports[ch] = r
            if total is None:
                total = r if len(by_channel) == 1 else SyncReport(destination="+".join(by_channel))
            if total is not r:
                for k in (
                    "added",
                    "removed",
                    "unchanged",
                    "failed",
                    "requests",
                    "retries",
                    "updated",
                    "skipped",
                ):
                    setattr(total, k, getattr(total, k) + getattr(r, k))
                total.errors += [f"{ch}: {e}" for e in r.errors]
                total.warnings += [f"{ch}: {w}" for w in r.warnings]
        return total or SyncReport(destination="+".join(c.channels))

    return send


def run(
    wh: Warehouse,
    plan_: Plan,
    *,
    settings: CampaignSettings | None = None,
    sender: Sender | None = None,
) -> RunResult:
    """Store the assignments (everyone) and exposures (the treated), then send."""
    c = plan_.campaign
    run_id = f"{c.name}-{plan_.at:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    s = settings or CampaignSettings()
    counts = plan_.counts()
    test = srm(counts, expected_shares(c.holdout, s.holdouts.global_control))
    report = None
    msgs = list(messages(plan_, s)) if c.message is not None else []
    if sender is not None and c.send:
        report = sender(plan_, msgs)
    # nothing delivered (no transport) is not a contact: it does not count towards caps
    sent_ok = report is not None and report.failed == 0
    with wh.transaction():
        record_assignments(
            wh,
            campaign=c.name,
            run_id=run_id,
            channel=c.channel,
            at=plan_.at,
            customer_ids=[p.customer_id for p in plan_.people],
            groups=[p.group for p in plan_.people],
            arms=[p.arm for p in plan_.people],
        )
        mid = {m.customer_id: m.message_id for m in msgs}
        by_channel: dict[str, list[Planned]] = {}
        for p in plan_.treated():
            by_channel.setdefault(p.channel or c.channel, []).append(p)
        for ch, people in by_channel.items():
            ok = sent_ok if ch not in plan_.reports else plan_.reports[ch].failed == 0
            record_exposures(
                wh,
                campaign=c.name,
                run_id=run_id,
                channel=ch,
                at=plan_.at,
                rows=[(p.customer_id, p.arm, ok, mid.get(p.customer_id)) for p in people],
            )
        steps = [
            {"step": st.key, "label": st.label, "count": st.count} for st in plan_.audience.steps
        ]
        wh.insert(
            "campaign_runs",
            ibis.memtable(
                pa.table(
                    {
                        "campaign": [c.name],
                        "run_id": [run_id],
                        "at": pa.array([plan_.at], pa.timestamp("us", tz="UTC")),
                        "steps": [json.dumps(steps)],
                        "srm": [json.dumps(test.as_dict())],
                    }
                )
            ),
        )
    sent = len(plan_.treated()) - (report.failed if report else 0)
    return RunResult(run_id, plan_, sent, report, test.p_value)

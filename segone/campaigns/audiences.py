"""Audiences: who a campaign may reach on one channel, with every removal counted.

An audience starts from a segment, a rule or model thresholds over the built ``profiles`` (all
three may be combined; they are ANDed), then each step removes people and is counted::

    12,430 in audience → 9,812 with e-mail → 8,990 consented → 8,990 not unsubscribed or bounced
    → 8,950 not suppressed → 8,950 not erased → 8,700 under the frequency cap → 435 held out

* **contact point**: profiles hold no contact data; the contact is the person's most recently
  seen identifier of the channel's type in ``customer_map`` (``email:…`` for e-mail,
  ``phone:…`` for SMS, ``handle:…`` for social, ``user_id:…`` for push/web), already
  normalised by identity resolution;
* **consent**: an explicit yes in the channel's consent column of the profile (unknown is no);
* **unsubscribed or bounced**: any such event of the person in ``events`` (Segment's e-mail
  spec names, see :data:`OPT_OUT_EVENTS`), whenever it happened;
* **suppressed**: a suppression document of the online store (``PUT /v1/suppressions/…``) on
  any of the person's identifiers that blocks this channel;
* **erased**: any of the person's identifiers whose salted hash is in ``erased_identifiers`` of
  the warehouse or of the online store (an erasure asked through the API before the next build);
* **frequency cap**: people already contacted ``max`` times on this channel by campaigns in
  the last ``days`` days (``campaign_exposures``).

All steps are flags of one Ibis table and counted in a single aggregate, so the counts are
exact and consistent with each other and the whole audience costs a small multiple of one scan
of the profiles. Held-out people (global control and campaign holdout) are assigned after the
last step, among reachable people only, so both groups are equally reachable.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from segone.campaigns.destinations.base import Member
from segone.decisions.channel import suppressed as suppressed_channels
from segone.exceptions import AudienceError
from segone.schema import TS
from segone.segments.batch import customer_events, require_profiles
from segone.segments.rules import Catalogue, Did, compile_rule, event_column, events_used
from segone.store.base import Warehouse


@dataclass(frozen=True)
class ChannelSpec:
    """How a channel reaches a person: the identifier type and the consent column(s)."""

    name: str
    id_type: str
    #: consent columns tried in order; the first the profiles have decides (none: nobody)
    consent: tuple[str, ...]
    #: events that mean the person opted out of or cannot receive this channel
    opt_out_events: tuple[str, ...] = ()


OPT_OUT_EVENTS = {
    "email": (
        "Email Unsubscribed",
        "Unsubscribed",
        "Email Bounced",
        "Email Marked as Spam",
    ),
    "sms": ("SMS Unsubscribed", "SMS Opted Out", "SMS Undeliverable"),
    "push": ("Push Notifications Disabled", "Push Unsubscribed"),
}

#: Channels and how they are reached. ``social`` is a handle to message or to match on a
#: social network: the canonical profile has no social consent, so a ``consent_social`` column
#: (from a source's extra fields) decides when present, else marketing e-mail consent does.
CHANNELS: dict[str, ChannelSpec] = {
    "email": ChannelSpec("email", "email", ("consent_email",), OPT_OUT_EVENTS["email"]),
    "sms": ChannelSpec("sms", "phone", ("consent_sms",), OPT_OUT_EVENTS["sms"]),
    "phone": ChannelSpec("phone", "phone", ("consent_sms",), OPT_OUT_EVENTS["sms"]),
    "push": ChannelSpec("push", "user_id", ("consent_push",), OPT_OUT_EVENTS["push"]),
    "web": ChannelSpec("web", "user_id", ("consent_push",), OPT_OUT_EVENTS["push"]),
    "social": ChannelSpec("social", "handle", ("consent_social", "consent_email")),
}
# the name a suppression document uses for each channel (decisions say "sms" for phones)
_SUPPRESSION_NAME = {"phone": "sms", "web": "push"}


def channel_spec(name: str) -> ChannelSpec:
    try:
        return CHANNELS[name]
    except KeyError:
        raise AudienceError(
            f"unknown channel {name!r}; use one of {', '.join(sorted(CHANNELS))}"
        ) from None


@dataclass(frozen=True)
class AudienceSpec:
    """Who: a segment, a rule (the segment rule language) and/or top shares of a score.

    ``top={"clv": 0.2}`` keeps people whose ``clv`` is in the top 20% of all profiles."""

    segment: str | None = None
    rule: Any = None
    top: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.segment is None and self.rule is None and not self.top:
            raise AudienceError("an audience needs a segment, a rule or a top share")
        for col, share in self.top.items():
            if not 0 < float(share) <= 1:
                raise AudienceError(f"top share of {col} must be in (0, 1]; got {share}")

    @classmethod
    def from_obj(cls, obj: Any) -> AudienceSpec:
        """From YAML data: ``{segment: at_risk, rule: {...}, top: {clv: 0.2}}`` (or a plain
        segment name)."""
        if isinstance(obj, str):
            return cls(segment=obj)
        if not isinstance(obj, Mapping):
            raise AudienceError("an audience is a segment name or {segment, rule, top}")
        unknown = set(obj) - {"segment", "rule", "top"}
        if unknown:
            raise AudienceError(
                f"unknown audience key(s) {sorted(unknown)}; use segment, rule, top"
            )
        top = obj.get("top") or {}
        if not isinstance(top, Mapping):
            raise AudienceError("audience top is a mapping like {clv: 0.2}")
        return cls(obj.get("segment"), obj.get("rule"), {str(k): float(v) for k, v in top.items()})

    def describe(self) -> str:
        parts = []
        if self.segment:
            parts.append(f"segment {self.segment}")
        if self.rule is not None:
            import json

            text = json.dumps(self.rule, separators=(",", ":"), default=str)
            parts.append(f"rule {text if len(text) <= 60 else text[:57] + '...'}")
        parts += [f"top {share:.0%} by {col}" for col, share in self.top.items()]
        return " and ".join(parts)


@dataclass(frozen=True)
class Caps:
    """At most ``max_contacts`` campaign contacts per person and channel in ``days`` days."""

    max_contacts: int = 2
    days: int = 7

    def __post_init__(self) -> None:
        if self.max_contacts < 1 or self.days < 1:
            raise AudienceError("a frequency cap needs max >= 1 and days >= 1")


@dataclass(frozen=True)
class Step:
    key: str
    label: str
    count: int


@dataclass
class Audience:
    """The reachable people (``reachable``: customer_id, contact) and the counted steps."""

    channel: str
    steps: list[Step]
    reachable: ibis.Table

    def count(self, key: str) -> int:
        for s in self.steps:
            if s.key == key:
                return s.count
        raise KeyError(key)

    def funnel(self) -> str:
        return " → ".join(f"{s.count:,} {s.label}" for s in self.steps)


# -- the pieces -------------------------------------------------------------------------------
def contacts(wh: Warehouse, id_type: str, among: ibis.Table | None = None) -> ibis.Table:
    """(customer_id, contact): each person's most recently seen identifier of ``id_type``
    (among the ``customer_map`` rows ``among``, when given)."""
    m = wh.table("customer_map") if among is None else among
    m = m.filter(m.id_type == id_type)
    w = ibis.window(group_by=m.customer_id, order_by=[ibis.desc(m.last_seen), m.node])
    ranked = m.mutate(_r=ibis.row_number().over(w))
    best = ranked.filter(ranked._r == 0)
    prefix = len(id_type) + 1
    return best.select("customer_id", contact=best.node.substr(prefix))


def scored_profiles(wh: Warehouse) -> ibis.Table:
    """``profiles`` with the latest model scores: a score the profile lacks (null, or no
    column) is taken from ``scores``, so a threshold on P(churn) works after any build."""
    p = wh.table("profiles")
    if "scores" not in wh.tables():
        return p
    s = wh.table("scores")
    cols = [c for c in s.columns if c not in ("customer_id", "as_of")]
    s = s.select("customer_id", *[s[c].name(f"_s_{c}") for c in cols])
    j = p.left_join(s, p.customer_id == s.customer_id)
    out = []
    for c in p.columns:
        if c in cols:
            out.append(ibis.coalesce(j[c], j[f"_s_{c}"]).name(c))
        else:
            out.append(j[c])
    out += [j[f"_s_{c}"].name(c) for c in cols if c not in p.columns]
    return j.select(*out)


def _segment_filter(
    wh: Warehouse, spec: AudienceSpec, catalogue: Catalogue | None, as_of: datetime
) -> tuple[ibis.Table, ir.BooleanValue]:
    """Profiles (with the event counts the rule needs) and the audience condition on them."""
    from segone.segments.rules import rule_from_obj

    p = scored_profiles(wh)
    attrs = dict(p.schema().items())
    rules = []
    if spec.segment is not None:
        if catalogue is None:
            raise AudienceError("an audience from a segment needs the segment catalogue")
        try:
            rules.append(catalogue[spec.segment].rule)
        except KeyError:
            names = ", ".join(s.name for s in catalogue)
            raise AudienceError(f"unknown segment {spec.segment!r}; known: {names}") from None
    if spec.rule is not None:
        rules.append(rule_from_obj(spec.rule, attrs, name="audience"))
    dids: dict[str, Did] = {}
    for r in rules:
        for d in events_used(r, catalogue):
            dids[event_column(d)] = d
    if dids:
        cutoff = ibis.literal(as_of, type=TS)
        ev = customer_events(wh)
        for col, d in dids.items():
            e = ev.filter((ev.name == d.event) & (ev.timestamp <= cutoff))
            if d.within_days is not None:
                e = e.filter(
                    e.timestamp > cutoff - ibis.interval(seconds=int(d.within_days * 86_400))
                )
            counts = e.group_by("customer_id").aggregate(**{col: e.count()})
            p = p.left_join(counts, "customer_id").drop("customer_id_right")
    cond: ir.BooleanValue = ibis.literal(True)
    for r in rules:
        cond = cond & compile_rule(r, p, catalogue)
    for col, share in spec.top.items():
        if col not in attrs or not attrs[col].is_numeric():
            raise AudienceError(f"top share needs a numeric profile column; {col!r} is not one")
        q = wh.execute(scored_profiles(wh)[col].quantile(1 - share))
        if q is None or q != q:  # no values: nobody is in the top
            cond = cond & ibis.literal(False)
        else:
            cond = cond & (p[col] >= float(q)) & p[col].notnull()
    return p, cond


def _opted_out(wh: Warehouse, ch: ChannelSpec) -> ibis.Table:
    ev = customer_events(wh)
    names = list(ch.opt_out_events) or ["\x00none"]
    return ev.filter(ev.name.isin(names)).select("customer_id").distinct().mutate(_oo=True)


def _suppressed_ids(
    wh: Warehouse, ch: ChannelSpec, suppressions: Mapping[str, Any], m: ibis.Table
) -> ibis.Table:
    """customer_ids with a suppression document blocking this channel on any identifier."""
    cname = _SUPPRESSION_NAME.get(ch.name, ch.name)
    nodes = [
        node
        for node, doc in suppressions.items()
        if cname in suppressed_channels({node: doc}, [cname])[0]
    ]
    t = wh.stage("_segone_aud_supp", pa.table({"node": pa.array(nodes, pa.string())}), append=False)
    j = m.join(t, m.node == t.node)
    return j.select(j.customer_id).distinct().mutate(_sup=True)


def _erased_ids(
    wh: Warehouse, online_hashes: Sequence[str], online_salts: Sequence[str], m: ibis.Table
) -> ibis.Table:
    """customer_ids any of whose identifiers is erased (warehouse or online store), under every
    salt either store knows.

    The identifiers' salted hashes are computed once per build (``identifier_hashes``, see
    :func:`segone.identity.erase.refresh_identifier_hashes`), so this is a join of that column
    (the hashes' first 12 hex digits) with the few erased hashes; the people it finds have their
    identifiers hashed again in full and compared with the whole hashes, so a chance match of
    the short key removes no one. A salt the table lacks (an online store's, not yet shared by
    a build) is hashed here for every identifier."""
    from segone.identity.erase import (
        KEY_DIGITS,
        erasure_salts,
        hashed,
        identifier_hashes_fresh,
        identifier_keys,
    )

    none = wh.table("customer_map").select("customer_id").limit(0).mutate(_era=True)
    if not online_hashes and wh.count("erased_identifiers") == 0:
        return none  # nothing erased anywhere
    wh_salts = erasure_salts(wh)
    salts = list(dict.fromkeys([*wh_salts, *online_salts]))
    if identifier_hashes_fresh(wh, wh_salts):
        keys = wh.table("identifier_hashes").select("customer_id", "node_key")
        new = [s for s in salts if s not in wh_salts]
        if new:
            keys = keys.union(identifier_keys(wh, new).drop("salt_id"), distinct=False)
    else:
        keys = identifier_keys(wh, salts).drop("salt_id")
    e = wh.table("erased_identifiers")
    extra = wh.stage(
        "_segone_aud_erased",
        pa.table({"node_hash": pa.array(list(online_hashes), pa.string())}),
        append=False,
    )
    hashes = e.select("node_hash").union(extra, distinct=True)
    short = hashes.select(k=hashes.node_hash.substr(0, KEY_DIGITS)).distinct()
    j = keys.join(short, keys.node_key == short.k)
    maybe = wh.materialize("_segone_aud_maybe_erased", j.select("customer_id").distinct())
    # confirm on the whole hash: the candidates' identifiers, hashed with every salt
    m = m.semi_join(maybe, "customer_id")
    full = ibis.union(
        *[m.select("customer_id", h=hashed(m.node, s)) for s in salts], distinct=False
    )
    hit = full.join(hashes, full.h == hashes.node_hash)
    return hit.select("customer_id").distinct().mutate(_era=True)


def _capped(wh: Warehouse, channel: str, caps: Caps, now: datetime) -> ibis.Table:
    from segone.campaigns.measure import ensure_tables

    ensure_tables(wh)
    x = wh.table("campaign_exposures")
    since = ibis.literal(now - timedelta(days=caps.days), type=TS)
    x = x.filter((x.channel == channel) & (x.exposed_at > since) & x.sent)
    c = x.group_by("customer_id").aggregate(_n=x.count())
    return c.filter(c._n >= caps.max_contacts).select("customer_id").mutate(_cap=True)


def build_audience(
    wh: Warehouse,
    spec: AudienceSpec,
    channel: str,
    *,
    as_of: datetime,
    catalogue: Catalogue | None = None,
    suppressions: Mapping[str, Any] | None = None,
    online_erased: Sequence[str] = (),
    online_salts: Sequence[str] = (),
    caps: Caps | None = None,
    fields: Sequence[str] = (),
) -> Audience:
    """Build the audience of ``spec`` on ``channel`` and count every step.

    ``suppressions``: the online store's suppression documents (identifier -> doc);
    ``online_erased``: the online store's erased identifier hashes (``online_salts``: the
    salts it hashed them with). ``fields``: profile columns
    to carry along (for messages and exports), nothing else is kept."""
    require_profiles(wh)
    ch = channel_spec(channel)
    caps = caps or Caps()
    p, cond = _segment_filter(wh, spec, catalogue, as_of)
    attrs = dict(scored_profiles(wh).schema().items())
    missing = [f for f in fields if f not in attrs]
    if missing:
        raise AudienceError(f"unknown profile field(s) {missing}; see `segone profiles` columns")
    consent_col = next((c for c in ch.consent if c in attrs), None)
    consent = p[consent_col] if consent_col is not None else ibis.literal(False)
    base = p.filter(cond).select("customer_id", *dict.fromkeys(fields), _consent=consent)
    # the whole audience, then only its people's identifiers (not every one's)
    base = wh.materialize("_segone_audience_base", base)
    cm = wh.table("customer_map")
    ct = contacts(wh, ch.id_type, among=cm.semi_join(base, "customer_id"))
    base = base.left_join(ct, "customer_id").drop("customer_id_right")
    for extra in (
        _opted_out(wh, ch),
        _suppressed_ids(wh, ch, suppressions or {}, cm),
        _erased_ids(wh, online_erased, online_salts, cm),
        _capped(wh, ch.name, caps, as_of),
    ):
        base = base.left_join(extra, "customer_id").drop("customer_id_right")
    flags = base.mutate(
        _has=base.contact.notnull() & (base.contact != ""),
        _ok=base._consent.fill_null(False).cast("boolean"),
        _oo=base._oo.fill_null(False),
        _sup=base._sup.fill_null(False),
        _era=base._era.fill_null(False),
        _cap=base._cap.fill_null(False),
    )
    flags = wh.materialize(f"_segone_audience_{ch.name}", flags)
    s1 = flags._has
    s2 = s1 & flags._ok
    s3 = s2 & ~flags._oo
    s4 = s3 & ~flags._sup
    s5 = s4 & ~flags._era
    s6 = s5 & ~flags._cap
    row = wh.execute(
        flags.aggregate(
            a=flags.count(),
            b=s1.cast("int64").sum(),
            c=s2.cast("int64").sum(),
            d=s3.cast("int64").sum(),
            e=s4.cast("int64").sum(),
            f=s5.cast("int64").sum(),
            g=s6.cast("int64").sum(),
        )
    ).iloc[0]
    n = [0 if row[k] is None or row[k] != row[k] else int(row[k]) for k in "abcdefg"]
    contact_word = {"email": "e-mail", "sms": "phone", "phone": "phone", "social": "social handle"}
    steps = [
        Step("audience", f"in {spec.describe()}", n[0]),
        Step("contact", f"with {contact_word.get(ch.name, ch.id_type)}", n[1]),
        Step("consented", "consented" if consent_col else "consented (no consent column)", n[2]),
        Step("not_opted_out", "not unsubscribed or bounced", n[3]),
        Step("not_suppressed", "not suppressed", n[4]),
        Step("not_erased", "not erased", n[5]),
        Step("under_cap", "after caps", n[6]),
    ]
    reachable = flags.filter(s6).select("customer_id", "contact", *dict.fromkeys(fields))
    return Audience(ch.name, steps, reachable)


def members(
    rows: Iterator[Mapping[str, Any]] | Sequence[Mapping[str, Any]],
    channel: str,
    fields: Sequence[str] = (),
) -> Iterator[Member]:
    """Destination rows carrying only ``fields`` (plus the id and the channel's contact)."""
    ch = channel_spec(channel)
    for r in rows:
        contact = r.get("contact")
        yield Member(
            customer_id=str(r["customer_id"]),
            email=contact if ch.id_type == "email" else None,
            phone=contact if ch.id_type == "phone" else None,
            fields={f: r.get(f) for f in fields},
        )


def export_audience(
    wh: Warehouse,
    audience: Audience,
    path: str | Path,
    *,
    columns: Sequence[str] = (),
    hashed: bool = False,
    exclude: ibis.Table | None = None,
) -> int:
    """Write the reachable people to CSV or Parquet (by the extension) with only ``columns``
    (profile fields carried by the audience) besides customer_id and the contact.

    ``hashed``: the contact as the hex SHA-256 of its normalised form (trimmed, lower-cased
    e-mail; E.164 phone as identity resolution stores it), as ad platforms match on.
    ``exclude``: a table of customer_id to leave out (the held-out people). Returns rows."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    path = Path(path)
    r = audience.reachable
    missing = [c for c in columns if c not in r.columns]
    if missing:
        raise AudienceError(f"column(s) {missing} are not carried by the audience")
    if exclude is not None:
        r = r.anti_join(exclude, "customer_id")
    contact = r.contact.strip().lower() if audience.channel == "email" else r.contact.strip()
    out = r.select(
        "customer_id",
        **({"contact_sha256": contact.hexdigest("sha256")} if hashed else {"contact": r.contact}),
        **{c: r[c] for c in columns},
    )
    table = wh.to_arrow(out)
    if path.suffix == ".parquet":
        pq.write_table(table, path)
    elif path.suffix == ".csv":
        pacsv.write_csv(table, path)
    else:
        raise AudienceError(f"export to .csv or .parquet, not {path.suffix or 'no extension'}")
    return int(table.num_rows)

"""Identity stitching at once, on every message: identifiers -> one person, with the batch guards.

Identifiers are ``"type:value"`` strings normalised exactly as the warehouse does
(``segone.identity.normalize``, and ``segone.identity.providers`` in Python; a test runs
both on the same inputs): ``user_id`` and
``anonymous_id`` (``userId``, ``anonymousId`` and an alias's ``previousId``) trimmed, e-mail
and phone from the traits (top level, then ``context.traits``).

``stitch`` decides whose event it is. Known identifiers point to their person; none known
means a new person (``live-<uuid4 hex>``). Identifiers that meet on one message join their
people (identify, alias, any event), except where the warehouse's guards say no:

* a blocked value (``test@test.com``, ``null``, ... and ``[identity] blocked``) links nothing;
* two people who each have a different user id are never merged: the identifier that would
  join them (a cookie on a shared laptop: two accounts on one device) stays where it is and is
  refused for this message;
* a person holds at most ``max_per_person`` e-mails / phones; further ones link nothing.

When people merge, the winner is a batch-published person (a warehouse ``customer_id``) if one
takes part, else the one with most identifiers; the others' identifiers are repointed to it,
their live documents merged into its own, and its journey gets a ``merged`` entry. Refused
identifiers are personal data: they are returned to the caller, never logged.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from segone.identity.candidates import blocked_values as blocked_values
from segone.identity.candidates import candidates as candidates
from segone.identity.candidates import is_blocked as is_blocked
from segone.identity.graph import PRIORITY, IdentitySettings
from segone.identity.providers import norm_email, norm_phone
from segone.live._tx import LiveTx
from segone.live.profile import merge_docs
from segone.live.values import clean, traits_of


def identifiers_of(msg: Mapping[str, Any], settings: IdentitySettings) -> list[str]:
    """The ``"type:value"`` identifiers a message carries, normalised, blocked values left out."""
    traits = traits_of(msg)
    # traits that are not text are null in the warehouse (JSON unwrap_as string)
    email = traits.get("email")
    phone = traits.get("phone")
    found = [
        ("user_id", clean(msg.get("userId"))),
        ("anonymous_id", clean(msg.get("anonymousId"))),
        ("anonymous_id", clean(msg.get("previousId"))),
        ("email", norm_email(email) if isinstance(email, str) else None),
        (
            "phone",
            norm_phone(phone, settings.default_country_code) if isinstance(phone, str) else None,
        ),
    ]
    blocked = blocked_values(settings)
    out: list[str] = []
    for kind, value in found:
        if value is None or value.lower() in blocked:
            continue
        ident = f"{kind}:{value}"
        if ident not in out:
            out.append(ident)
    return out


@dataclass
class StitchResult:
    """Whose event it is. ``refused`` holds identifiers (personal data: never log them) that
    were not linked, with the rule in ``reasons``; ``linked`` the identifiers newly linked."""

    person_id: str
    merged_from: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    linked: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)
    new: bool = False


def _kind(identifier: str) -> str:
    return identifier.split(":", 1)[0]


def _rank(identifier: str) -> int:
    return _RANK.get(_kind(identifier), len(PRIORITY))


_RANK: dict[str, int] = {}
for _k, _t in enumerate(PRIORITY):
    _RANK.setdefault(_t, _k)  # PRIORITY.index


def new_person_id() -> str:
    return "live-" + uuid.uuid4().hex


def stitch(
    tx: LiveTx,
    msg: Mapping[str, Any],
    identifiers: list[str],
    settings: IdentitySettings,
    now: datetime,
) -> StitchResult:
    """Find or create the message's person, linking and merging as the guards allow."""
    refused: dict[str, str] = {}
    ids: list[str] = []
    blocked = blocked_values(settings)
    for ident in identifiers:
        if ident.split(":", 1)[1].lower() in blocked:  # is_blocked
            refused[ident] = "blocked_value"
        elif ident not in ids:
            ids.append(ident)
    if len(ids) > 1:
        ids.sort(key=_rank)  # stable: a message's own order breaks ties
    known = tx.identity.lookup(ids) if ids else {}
    # a known person's identifiers are read when a guard needs them (nothing is written before
    # that, so they are what they were when the message arrived)
    owned: dict[str, list[str]] = {}
    uids: dict[str, set[str]] = {}

    def owned_of(p: str) -> list[str]:
        if p not in owned:
            owned[p] = tx.identity.identifiers_of(p)
        return owned[p]

    def uids_of(p: str) -> set[str]:
        if p not in uids:
            uids[p] = {i for i in owned_of(p) if _kind(i) == "user_id"}
        return uids[p]

    target = None
    for i in ids:
        if i.startswith("user_id:"):  # _kind(i) == "user_id" (every one has a ":")
            target = i
            break
    group: list[str] = []
    if target is not None and target in known:
        group.append(known[target])
    for ident in ids:
        p = known.get(ident)
        if p is None or p in group:
            continue
        theirs = uids_of(p)
        if not theirs or theirs == {target} or (target is None and len(theirs) == 1):
            group.append(p)
            if target is None and theirs:
                target = next(iter(theirs))
        else:  # would join two people with different user ids: it links nothing here
            refused[ident] = "shared_identifier"

    result = StitchResult(person_id="", reasons=refused)
    if not group:
        result.person_id, result.new = new_person_id(), True
    else:
        if len(group) > 1:
            result.person_id = _winner(tx, group, {p: owned_of(p) for p in group})
        else:
            result.person_id = group[0]
        result.merged_from = [p for p in group if p != result.person_id]
        if result.merged_from:
            _merge(tx, result.person_id, result.merged_from, now)
    winner = result.person_id

    new_ids = [i for i in ids if i not in known and i not in refused]
    counts: dict[str, int] = {}
    if new_ids:
        if result.merged_from:
            have = tx.identity.identifiers_of(winner)
        else:
            have = [] if result.new else owned_of(winner)
        for i in have:
            counts[_kind(i)] = counts.get(_kind(i), 0) + 1
    for ident in new_ids:
        kind = _kind(ident)
        limit = settings.max_per_person.get(kind)
        if limit is not None and counts.get(kind, 0) >= limit:
            refused[ident] = "max_per_person"
            continue
        tx.identity.link(ident, winner, source="live")
        counts[kind] = counts.get(kind, 0) + 1
        result.linked.append(ident)
    result.refused = list(refused)
    return result


def _winner(tx: LiveTx, group: list[str], owned: dict[str, list[str]]) -> str:
    """A batch-published person first, then the one with most identifiers, then message order."""
    if len(group) == 1:
        return group[0]
    published = tx.docs.get("published", group)
    order = {p: k for k, p in enumerate(group)}
    return min(group, key=lambda p: (p not in published, -len(owned.get(p, [])), order[p]))


def merge_people(tx: LiveTx, loser: str, winner: str, now: datetime) -> None:
    """Merge ``loser`` into ``winner`` (e.g. a live-only person the build resolved to a
    customer): identifiers and records repointed, live documents merged, a journey entry."""
    if loser != winner:
        _merge(tx, winner, [loser], now)


def _merge(tx: LiveTx, winner: str, losers: list[str], now: datetime) -> None:
    docs = tx.docs.get("person", [winner, *losers])
    merged = docs.get(winner)
    for loser in losers:
        tx.identity.repoint(loser, winner)
        if loser in docs:
            merged = merge_docs(merged, docs[loser])
        tx.journey.add(winner, now, "merged", {"from": loser})
    if merged is not None:
        tx.docs.put("person", {winner: merged})
    gone = [p for p in losers if p in docs]
    if gone:
        tx.docs.delete("person", gone)

"""Invariants of the decision layer under any input (hypothesis): consent, suppression,
frequency caps and exclusions are always respected; propensities are probabilities."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segone.decisions import DecisionSettings, apply_channel_delta, decide

NOW = datetime(2024, 5, 1, 12, tzinfo=UTC)
CHANNELS = ("email", "sms", "push")
ITEMS = [f"P{i}" for i in range(12)]
IDENTIFIERS = ["email:a@example.com", "phone:+15550001", "user_id:u1"]
YES = (True, 1, "yes", "true")

consent = st.sampled_from([True, False, None, "yes", "no", 1, 0, "true", "", "maybe"])
suppression_doc = st.fixed_dictionaries(
    {},
    optional={
        "channels": st.one_of(st.just("*"), st.lists(st.sampled_from(CHANNELS), max_size=3)),
        "items": st.lists(st.sampled_from(ITEMS), max_size=4),
    },
)
stamp = st.floats(-60, 2).map(lambda h: (NOW + timedelta(hours=h)).isoformat())
channel_entry = st.fixed_dictionaries(
    {
        "sent": st.one_of(st.integers(0, 50), st.none(), st.text(max_size=3)),
        "responded": st.integers(0, 50),
        "recent": st.lists(st.one_of(stamp, stamp, st.text(max_size=5))),
    }
)

item_doc = st.fixed_dictionaries(
    {},
    optional={
        "popularity": st.floats(0, 1000),
        "suppressed": st.booleans(),
        "active": st.booleans(),
        "category": st.sampled_from(["A > B > C", "A > D", "E"]),
    },
)


def _time(text: str) -> datetime | None:
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        return None
    return t if t.tzinfo else None


def _suppressed_channels(supp: dict[str, dict[str, Any]]) -> set[str]:
    out: set[str] = set()
    for ident, doc in supp.items():
        which = doc.get(
            "channels", {"email": ["email"], "phone": ["sms"]}.get(ident[:5].rstrip(":"), "*")
        )
        out |= set(CHANNELS) if which == "*" else set(which)
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    consents=st.fixed_dictionaries({c: consent for c in CHANNELS}),
    supp=st.dictionaries(st.sampled_from(IDENTIFIERS), suppression_doc, max_size=3),
    channel_doc=st.dictionaries(st.sampled_from(CHANNELS), channel_entry, max_size=3),
    catalogue=st.fixed_dictionaries({i: item_doc for i in ITEMS}),
    exclude=st.lists(st.sampled_from(ITEMS), max_size=4),
    bought=st.lists(st.sampled_from(ITEMS), max_size=4),
    cap=st.integers(0, 4),
    limit=st.integers(1, 14),
    seed=st.integers(0, 2**32 - 1),
)
def test_consent_caps_suppression_and_exclusions_always_hold(
    consents: dict[str, Any],
    supp: dict[str, dict[str, Any]],
    channel_doc: dict[str, Any],
    catalogue: dict[str, dict[str, Any]],
    exclude: list[str],
    bought: list[str],
    cap: int,
    limit: int,
    seed: int,
) -> None:
    view = {f"consent_{c}": v for c, v in consents.items()} | {"products_bought": bought}
    s = DecisionSettings(frequency_cap_per_day=cap)
    ctx = {"placement": "home", "limit": limit, "exclude": exclude}
    d = decide(
        view,
        None,
        ctx,
        catalogue,
        {},
        channel_doc,
        s,
        NOW,
        np.random.default_rng(seed),
        suppressions=supp,
    )

    ch = d.channel.channel
    if ch is not None:
        assert consents[ch] in YES
        assert ch not in _suppressed_channels(supp)
        recent = [_time(t) for t in channel_doc.get(ch, {}).get("recent", [])]
        assert sum(t > NOW - timedelta(hours=24) for t in recent if t) < cap
        assert d.channel_delta == {"channel": ch, "sent": 1, "at": NOW.isoformat()}
    else:
        assert d.channel_delta is None and d.channel.reason

    never = set(exclude) | set(bought)
    never |= {i for doc in supp.values() for i in doc.get("items", [])}
    never |= {
        i for i, doc in catalogue.items() if doc.get("suppressed") or doc.get("active") is False
    }
    shown = [r.item for r in d.items]
    assert not set(shown) & never
    assert len(shown) == min(limit, len(set(ITEMS) - never)) == len(set(shown))
    for r in d.items:
        assert 0 < r.position_propensity <= r.propensity <= 1 and r.reasons
    assert all(0 <= p <= 1 for p in d.log["p_shown"])
    json.dumps(d.log)


@settings(max_examples=60, deadline=None)
@given(
    gaps=st.lists(st.integers(1, 600), min_size=1, max_size=40),  # minutes between requests
    cap=st.integers(0, 3),
    seed=st.integers(0, 2**32 - 1),
)
def test_a_day_of_decisions_never_exceeds_the_cap(gaps: list[int], cap: int, seed: int) -> None:
    """Decisions applied one after another (as the Engine does): in any 24 hours, at most
    ``cap`` follow-ups per channel."""
    view = {"consent_email": True, "consent_sms": True, "consent_push": True}
    s = DecisionSettings(frequency_cap_per_day=cap)
    rng = np.random.default_rng(seed)
    doc: dict[str, Any] | None = None
    sent: dict[str, list[datetime]] = {c: [] for c in CHANNELS}
    now = NOW
    for gap in gaps:
        now += timedelta(minutes=gap)
        d = decide(view, None, {"placement": "x"}, {}, {}, doc, s, now, rng)
        if d.channel_delta:
            doc = apply_channel_delta(doc, d.channel_delta, now)
            sent[d.channel_delta["channel"]].append(now)
    for times in sent.values():
        for t in times:
            assert sum(t - timedelta(hours=24) < u <= t for u in times) <= cap

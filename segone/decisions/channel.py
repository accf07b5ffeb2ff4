"""Follow-up channel choice: only consented, unsuppressed channels under the frequency cap,
the best of them by a Thompson draw of the person's own response rate per channel.

The per-person channel document (online store kind ``"channel"``, key person_id)::

    {"email": {"sent": 4, "responded": 1, "recent": ["2024-05-01T09:00:00+00:00", ...]}, ...}

``sent``/``responded`` count follow-ups and responses ever; ``recent`` holds the contact times
of the last 24 hours (older ones are dropped when the document is updated). The frequency cap is
a rolling 24 hours, so it means the same in every time zone.

Suppression documents (kind ``"suppression"``, key an identifier such as ``email:a@b.c``)::

    {"channels": ["email"], "items": ["P1"], "reason": "unsubscribed"}

``channels`` may be ``"*"`` (every channel); without it, an ``email:`` identifier suppresses
e-mail, a ``phone:`` identifier SMS, any other identifier every channel. ``items`` are never
shown to the person.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from segone.exceptions import DecisionError

CAP_WINDOW = timedelta(hours=24)
_RECENT_KEEP = 100  # bound on a document's ``recent`` list, whatever the cap
_IMPLIED = {"email": ("email",), "phone": ("sms",)}
_YES = {"true", "yes", "y", "1", "opt_in", "opted_in", "granted"}
_CHANNEL_PRIOR_GLOBAL = 20.0  # pseudo-count of the global rate's default


@dataclass(frozen=True)
class ChannelChoice:
    """The follow-up channel (None: none may be used now) and why."""

    channel: str | None
    reason: str
    #: probability the policy picks this channel among the eligible ones (None: no channel)
    propensity: float | None = None
    #: each channel's status: "eligible", "no consent", "suppressed" or "capped"
    considered: dict[str, str] = field(default_factory=dict)
    #: posterior mean response rate of each eligible channel
    rates: dict[str, float] = field(default_factory=dict)

    def to_log(self) -> dict[str, Any]:
        return {
            "chosen": self.channel,
            "reason": self.reason,
            "propensity": self.propensity,
            "considered": self.considered,
            "rates": self.rates,
        }


def channel_key(channel: str) -> str:
    """Counter key of a channel's global (successes = responses, trials = follow-ups)."""
    return f"ch|{channel}"


def consented(view: Mapping[str, Any], channel: str) -> bool:
    """True only for an explicit yes in ``consent_<channel>`` (unknown is no)."""
    v = view.get(f"consent_{channel}")
    if isinstance(v, bool):
        return v
    if isinstance(v, int | float):
        return v == 1
    return isinstance(v, str) and v.strip().lower() in _YES


def suppressed(
    suppressions: Mapping[str, Mapping[str, Any]] | None, channels: Sequence[str]
) -> tuple[set[str], set[str]]:
    """(channels, items) suppressed for a person, from the documents of their identifiers."""
    chans: set[str] = set()
    items: set[str] = set()
    for ident, doc in (suppressions or {}).items():
        if not isinstance(doc, Mapping):
            continue
        which: Any = doc.get("channels")
        if which is None:
            which = _IMPLIED.get(ident.split(":", 1)[0], "*")
        if which == "*":
            chans.update(channels)
        elif isinstance(which, str):
            chans.add(which)
        elif isinstance(which, list | tuple):
            chans.update(str(c) for c in which)
        items.update(str(i) for i in doc.get("items") or ())
    return chans, items


def _parse(ts: Any) -> datetime | None:
    try:
        t = datetime.fromisoformat(str(ts))
    except ValueError:
        return None
    return t if t.tzinfo else None


def _count(v: Any) -> float:
    return max(float(v), 0.0) if isinstance(v, int | float) and not isinstance(v, bool) else 0.0


def _entry(doc: Mapping[str, Any], channel: str) -> Mapping[str, Any]:
    e = doc.get(channel)
    return e if isinstance(e, Mapping) else {}


def contacts_in_window(entry: Mapping[str, Any] | None, now: datetime) -> int:
    """Follow-ups on one channel in the 24 hours up to ``now`` (one stamped later than ``now``,
    by another server's clock, counts too: the cap must never be exceeded)."""
    recent = (entry or {}).get("recent")
    if not isinstance(recent, list):
        return 0
    since = now - CAP_WINDOW
    return sum(1 for ts in recent if (t := _parse(ts)) and t > since)


def choose_channel(
    view: Mapping[str, Any],
    channel_doc: Mapping[str, Any] | None,
    stats: Mapping[str, tuple[float, float]],
    *,
    channels: Sequence[str],
    cap: int,
    now: datetime,
    rng: np.random.Generator,
    suppressions: Mapping[str, Mapping[str, Any]] | None = None,
    prior_rate: float = 0.05,
    prior_strength: float = 10.0,
    n_draws: int = 64,
) -> ChannelChoice:
    """The channel to follow up on, or None with the reason (``"no consent"``, ``"capped"``...).

    The prior of the person's rate on a channel is ``p_email_click`` from the batch build for
    e-mail, else the channel's global rate (``stats[channel_key(c)]`` shrunk to
    ``prior_rate``), worth ``prior_strength`` follow-ups; their own sent/responded counts come on
    top. Like the item policy, one of ``n_draws`` joint Beta draws is picked uniformly, so the
    logged propensity is exact.
    """
    doc = channel_doc or {}
    blocked, _ = suppressed(suppressions, channels)
    status: dict[str, str] = {}
    for c in channels:
        if not consented(view, c):
            status[c] = "no consent"
        elif c in blocked:
            status[c] = "suppressed"
        elif contacts_in_window(_entry(doc, c), now) >= cap:
            status[c] = "capped"
        else:
            status[c] = "eligible"
    ok = [c for c in channels if status[c] == "eligible"]
    if not ok:
        kinds = set(status.values())
        if len(kinds) == 1:
            reason = kinds.pop()
        elif not status:
            reason = "no channel configured"
        else:
            reason = "; ".join(f"{c}: {s}" for c, s in status.items())
        return ChannelChoice(None, reason, None, status)

    a = np.empty(len(ok))
    b = np.empty(len(ok))
    for k, c in enumerate(ok):
        s_g, t_g = stats.get(channel_key(c), (0.0, 0.0))
        m = (_CHANNEL_PRIOR_GLOBAL * prior_rate + s_g) / (_CHANNEL_PRIOR_GLOBAL + max(t_g, s_g))
        own = view.get("p_email_click") if c == "email" else None
        if isinstance(own, int | float) and not isinstance(own, bool) and 0 < own < 1:
            m = float(own)
        m = min(max(m, 1e-4), 1 - 1e-4)
        e = _entry(doc, c)
        sent = _count(e.get("sent"))
        resp = min(_count(e.get("responded")), sent)
        a[k] = prior_strength * m + resp
        b[k] = prior_strength * (1 - m) + sent - resp
    draws = rng.beta(a, b, size=(n_draws, len(ok)))
    best = draws.argmax(axis=1)
    j = int(rng.integers(n_draws))
    pick = int(best[j])
    means = a / (a + b)
    if len(ok) == 1:
        reason = "only eligible channel"
    elif pick == int(means.argmax()):
        reason = "best response rate"
    else:
        reason = "explore"
    return ChannelChoice(
        ok[pick],
        reason,
        float(np.count_nonzero(best == pick) / n_draws),
        status,
        {c: float(means[k]) for k, c in enumerate(ok)},
    )


def apply_channel_delta(
    doc: Mapping[str, Any] | None, delta: Mapping[str, Any], now: datetime
) -> dict[str, Any]:
    """The channel document after one contact (``{"channel", "sent": 1, "at"}``) or one response
    (``{"channel", "responded": 1}``); contacts older than 24 hours are dropped from ``recent``.
    Run it on the document read inside the write transaction, so concurrent updates add up."""
    c = delta.get("channel")
    if not isinstance(c, str) or not c:
        raise DecisionError("a channel delta needs its channel")
    out = {k: dict(v) for k, v in (doc or {}).items() if isinstance(v, Mapping)}
    e = out.setdefault(c, {"sent": 0, "responded": 0, "recent": []})
    e["sent"] = int(_count(e.get("sent")) + _count(delta.get("sent")))
    e["responded"] = int(_count(e.get("responded")) + _count(delta.get("responded")))
    since = now - CAP_WINDOW
    old = e.get("recent")
    recent = [ts for ts in old if (t := _parse(ts)) and t > since] if isinstance(old, list) else []
    if delta.get("at"):
        recent.append(str(delta["at"]))
    e["recent"] = recent[-_RECENT_KEEP:]
    return out

"""Settings of the decision layer, read once from the project's ``Settings`` (``[server]``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from segone.decisions.policy import PolicyParams

DEFAULT_CHANNELS = ("email", "sms", "push")


@dataclass(frozen=True)
class DecisionSettings:
    """What ``decide`` needs; build it once with :meth:`from_settings` and reuse it."""

    #: follow-up channels; consent is read from the profile column ``consent_<channel>``
    channels: tuple[str, ...] = DEFAULT_CHANNELS
    #: follow-up contacts per person per channel in any 24 hours
    frequency_cap_per_day: int = 3
    #: items returned when the context gives no ``limit``, and the most it may ask for
    default_limit: int = 10
    max_limit: int = 100
    #: candidates scored per decision; a larger catalogue is cut to its most popular items
    max_candidates: int = 1000
    #: profile column whose value is the context group ("group leverage")
    group_field: str = "lifecycle_stage"
    #: items the person bought: True leaves them all out, False none; None (the default)
    #: leaves out those the last build found people rarely buy again (``buy_again``), and all
    #: of them when no build has learned it. A decision's ``exclude_bought`` overrides it.
    exclude_bought: bool | None = None
    #: channel response rate assumed before any response is counted (email: p_email_click)
    channel_prior_rate: float = 0.05
    #: pseudo-count of a person's channel prior (their own responses outweigh it after ~10)
    channel_prior_strength: float = 10.0
    policy: PolicyParams = field(default_factory=PolicyParams)

    @classmethod
    def from_settings(cls, settings: Any) -> DecisionSettings:
        """From ``segone.config.Settings`` (its ``server`` part, when there is one), or None."""
        if isinstance(settings, DecisionSettings):
            return settings
        server = getattr(settings, "server", None)
        base = cls()
        extra = tuple(getattr(server, "channels", ()) or ())
        return cls(
            channels=tuple(dict.fromkeys(base.channels + extra)),
            frequency_cap_per_day=int(
                getattr(server, "frequency_cap_per_day", base.frequency_cap_per_day)
            ),
        )

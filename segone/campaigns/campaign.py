"""Campaigns as objects: one YAML file each in the project's ``campaigns/`` folder.

::

    name: winback
    description: Bring back valuable customers who are drifting away
    audience:                      # a segment, a rule and/or top shares (ANDed)
      segment: at_risk
      rule: {churn_probability: {gt: 0.6}}
      top: {clv: 0.2}
    channel: email                 # email, sms, push, web or social
    channels: [email, sms]         # optional: the channels a person may be reached on; a
                                   # one_to_one arm uses each person's preferred one (see run.py),
                                   # the other arms the first of this list the person is
                                   # reachable on
    holdout: 0.1                   # campaign holdout (on top of the global control group)
    arms:
      - {name: mass, kind: mass, offer: {title: "10% off everything", category: "Home"}}
      - name: by_segment
        kind: segment
        offers:                    # first segment the person is in wins; `default` otherwise
          vip: {title: "Early access"}
          default: {title: "10% off"}
      - {name: personal, kind: one_to_one}        # own recommendations, own timing
      - name: on_risk
        kind: triggered
        trigger: {transition: "lifecycle:at_risk", within_days: 14}   # or {event: Cart Abandoned}
    message:
      subject: "{{ first_name or 'Hello' }}, {{ offer.title }}"
      text: "{% for p in products %}- {{ p.name }}\\n{% endfor %}{{ reason }}"
      html: "<p>{{ offer.title }}</p>"
      unsubscribe_url: "https://shop.example/unsubscribe?c={customer_id}&t={token}"
    fields: [first_name, top_category]   # profile fields templates and exports may use
    schedule: {horizon_days: 14}         # one-to-one sends are spread over this horizon
    attribution: {window_days: 14, pre_days: 180}
    conversion: order                    # or {kind: event, name: Signed Up}
    frequency_cap: {max: 2, days: 7}
    send:                                # how `segone campaign run` delivers
      smtp: {host: 127.0.0.1, port: 2525, sender: shop@example.com, rate_per_second: 20}
      # or destination: {kind: webhook, config: {...}}

The global control group lives in ``campaigns/settings.toml`` (``global_control = 0.05``,
``global_salt = "..."``, ``secret = "..."`` for unsubscribe links).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from segone.campaigns.audiences import AudienceSpec, Caps, channel_spec
from segone.campaigns.holdouts import HoldoutSettings
from segone.campaigns.measure import Conversion
from segone.campaigns.messages import MessageTemplate
from segone.exceptions import CampaignError, SegoneError

ARM_KINDS = ("mass", "segment", "one_to_one", "triggered")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_KEYS = {
    "name",
    "description",
    "audience",
    "channel",
    "channels",
    "holdout",
    "arms",
    "message",
    "fields",
    "schedule",
    "attribution",
    "conversion",
    "frequency_cap",
    "send",
    "salt",
}


@dataclass(frozen=True)
class Arm:
    """One way of treating people: ``mass`` (one offer for all), ``segment`` (offer per
    segment), ``one_to_one`` (the person's own recommendations and timing) or ``triggered``
    (only people who had the trigger recently)."""

    name: str
    kind: str
    weight: float = 1.0
    offer: Mapping[str, Any] = field(default_factory=dict)
    offers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    trigger: Mapping[str, Any] = field(default_factory=dict)
    products: int = 3

    @classmethod
    def from_obj(cls, obj: Any, where: str) -> Arm:
        if not isinstance(obj, Mapping):
            raise CampaignError(f"{where}: an arm is a mapping with name and kind")
        unknown = set(obj) - {"name", "kind", "weight", "offer", "offers", "trigger", "products"}
        if unknown:
            raise CampaignError(f"{where}: unknown arm key(s) {sorted(unknown)}")
        name, kind = str(obj.get("name", "")), str(obj.get("kind", ""))
        if not _NAME.match(name):
            raise CampaignError(f"{where}: arm name must be letters, digits, '_' or '-'")
        if kind not in ARM_KINDS:
            raise CampaignError(f"{where}: arm kind must be one of {', '.join(ARM_KINDS)}")
        weight = float(obj.get("weight", 1.0))
        if weight <= 0:
            raise CampaignError(f"{where}: arm weight must be positive")
        trigger = dict(obj.get("trigger") or {})
        if kind == "triggered" and not ({"transition", "event"} & set(trigger)):
            raise CampaignError(f"{where}: a triggered arm needs trigger: {{transition|event}}")
        offers = obj.get("offers") or {}
        if kind == "segment" and not offers:
            raise CampaignError(f"{where}: a segment arm needs offers: {{segment: offer}}")
        return cls(
            name,
            kind,
            weight,
            dict(obj.get("offer") or {}),
            {str(k): dict(v or {}) for k, v in offers.items()},
            trigger,
            int(obj.get("products", 3)),
        )


@dataclass(frozen=True)
class Campaign:
    name: str
    audience: AudienceSpec
    channel: str
    arms: tuple[Arm, ...]
    description: str = ""
    holdout: float = 0.1
    message: MessageTemplate | None = None
    fields: tuple[str, ...] = ("first_name",)
    horizon_days: int = 14
    window_days: int = 14
    pre_days: int = 180
    conversion: Conversion = field(default_factory=Conversion)
    caps: Caps = field(default_factory=Caps)
    send: Mapping[str, Any] = field(default_factory=dict)
    salt: str = ""
    source: str = ""
    #: every channel people may be reached on, ``channel`` first (default: ``channel`` alone)
    channels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.channels:
            object.__setattr__(self, "channels", (self.channel,))

    @property
    def hash_salt(self) -> str:
        return self.salt or f"campaign:{self.name}"

    def arm_weights(self) -> dict[str, float]:
        return {a.name: a.weight for a in self.arms}

    @classmethod
    def from_obj(cls, obj: Any, source: str = "<campaign>") -> Campaign:
        if not isinstance(obj, Mapping):
            raise CampaignError(f"{source}: a campaign is a mapping")
        unknown = set(obj) - _KEYS
        if unknown:
            raise CampaignError(f"{source}: unknown key(s) {sorted(unknown)}")
        name = str(obj.get("name", ""))
        if not _NAME.match(name):
            raise CampaignError(f"{source}: a campaign needs a name of letters, digits, '_', '-'")
        try:
            audience = AudienceSpec.from_obj(obj.get("audience"))
            channel = str(obj.get("channel", "email"))
            channel_spec(channel)
            chans_obj = obj.get("channels") or [channel]
            if not isinstance(chans_obj, list) or not chans_obj:
                raise CampaignError(f"{source}: channels is a list like [email, sms]")
            chans = [str(x) for x in chans_obj]
            for x in chans:
                channel_spec(x)
            if len(set(chans)) != len(chans):
                raise CampaignError(f"{source}: channels are listed twice")
            if "channel" not in obj:
                channel = chans[0]
            elif channel not in chans:
                raise CampaignError(f"{source}: channel {channel!r} is not in channels {chans}")
            chans = [channel, *(x for x in chans if x != channel)]
            arms_obj = obj.get("arms") or [{"name": "main", "kind": "mass"}]
            if not isinstance(arms_obj, list):
                raise CampaignError(f"{source}: arms is a list")
            arms = tuple(Arm.from_obj(a, f"{source}: arm {i + 1}") for i, a in enumerate(arms_obj))
            if len({a.name for a in arms}) != len(arms):
                raise CampaignError(f"{source}: arm names must differ")
            holdout = float(obj.get("holdout", 0.1))
            if not 0 <= holdout < 1:
                raise CampaignError(f"{source}: holdout must be in [0, 1)")
            msg = obj.get("message")
            att = dict(obj.get("attribution") or {})
            sched = dict(obj.get("schedule") or {})
            cap = dict(obj.get("frequency_cap") or {})
            fields_ = obj.get("fields", ["first_name"])
            if not isinstance(fields_, list):
                raise CampaignError(f"{source}: fields is a list of profile columns")
            return cls(
                name=name,
                audience=audience,
                channel=channel,
                arms=arms,
                description=str(obj.get("description", "")),
                holdout=holdout,
                message=None if msg is None else MessageTemplate.from_obj(msg),
                fields=tuple(str(f) for f in fields_),
                horizon_days=int(sched.get("horizon_days", 14)),
                window_days=int(att.get("window_days", 14)),
                pre_days=int(att.get("pre_days", 180)),
                conversion=Conversion.from_obj(obj.get("conversion")),
                caps=Caps(int(cap.get("max", 2)), int(cap.get("days", 7))),
                send=dict(obj.get("send") or {}),
                salt=str(obj.get("salt", "")),
                source=source,
                channels=tuple(chans),
            )
        except CampaignError:
            raise
        except SegoneError as exc:
            raise CampaignError(f"{source}: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise CampaignError(f"{source}: {exc}") from None


def campaign_dir(root: Path) -> Path:
    return Path(root) / "campaigns"


def load_campaigns(root: Path) -> dict[str, Campaign]:
    """Every campaign of the project (``campaigns/*.yaml``), by name."""
    out: dict[str, Campaign] = {}
    folder = campaign_dir(root)
    files = sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml")) if folder.is_dir() else []
    for f in files:
        try:
            data = yaml.safe_load(f.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise CampaignError(f"{f}: not valid YAML ({exc})") from None
        items = data if isinstance(data, list) else [data]
        for item in items:
            if item is None:
                continue
            c = Campaign.from_obj(item, str(f))
            if c.name in out:
                raise CampaignError(f"{f}: campaign {c.name!r} is defined twice")
            out[c.name] = c
    return out


def get_campaign(root: Path, name: str) -> Campaign:
    found = load_campaigns(root)
    if name not in found:
        known = ", ".join(sorted(found)) or "none (add campaigns/NAME.yaml)"
        raise CampaignError(f"no campaign {name!r}; known: {known}")
    return found[name]


@dataclass(frozen=True)
class CampaignSettings:
    holdouts: HoldoutSettings = field(default_factory=HoldoutSettings)
    #: key of unsubscribe-link tokens (set it in production; the default is only for tests)
    secret: str = "segone-unsubscribe"


def campaign_settings(root: Path) -> CampaignSettings:
    """``campaigns/settings.toml``: global_control, global_salt, secret."""
    f = campaign_dir(root) / "settings.toml"
    if not f.exists():
        return CampaignSettings()
    try:
        data = tomllib.loads(f.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise CampaignError(f"{f}: {exc}") from None
    unknown = set(data) - {"global_control", "global_salt", "secret"}
    if unknown:
        raise CampaignError(f"{f}: unknown setting(s) {sorted(unknown)}")
    base = HoldoutSettings()
    try:
        hs = HoldoutSettings(
            float(data.get("global_control", base.global_control)),
            str(data.get("global_salt", base.global_salt)),
        )
    except SegoneError as exc:
        raise CampaignError(f"{f}: {exc}") from None
    return CampaignSettings(hs, str(data.get("secret", CampaignSettings.secret)))

"""Campaigns: audiences, destinations, messages, holdouts and lift.

The layer above segments and decisions: it turns who a person is (segments, stage, scores,
decisions) into something sent to them, and measures what that caused against held-out people.

Modules: ``audiences`` (who is reachable, every step counted), ``holdouts`` (sticky hash
groups, SRM), ``messages`` (sandboxed templates), ``campaign`` (the YAML files), ``run``
(plan, render, send, record), ``measure`` (lift with intervals), ``simulate`` (the ladder on a
generated store), ``service`` (a project's campaigns, for the CLI and the API) and
``destinations`` (where audiences and messages go).
"""

from importlib import import_module
from typing import Any

# names -> module; imported on first use, so that ``segone.campaigns.destinations`` (and the CLI)
# do not pay for statsmodels and Jinja2 when they do not need them
_WHERE = {
    "Audience": "audiences",
    "AudienceError": "audiences",
    "AudienceSpec": "audiences",
    "Caps": "audiences",
    "build_audience": "audiences",
    "export_audience": "audiences",
    "Arm": "campaign",
    "Campaign": "campaign",
    "CampaignError": "campaign",
    "load_campaigns": "campaign",
    "HoldoutSettings": "holdouts",
    "assign": "holdouts",
    "bucket": "holdouts",
    "srm": "holdouts",
    "CampaignReport": "measure",
    "Conversion": "measure",
    "MeasureError": "measure",
    "measure": "measure",
    "MessageError": "messages",
    "MessageTemplate": "messages",
    "render": "messages",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(f"segone.campaigns.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'segone.campaigns' has no attribute {name!r}")


__all__ = [
    "Arm",
    "Audience",
    "AudienceError",
    "AudienceSpec",
    "Campaign",
    "CampaignError",
    "CampaignReport",
    "Caps",
    "Conversion",
    "HoldoutSettings",
    "MeasureError",
    "MessageError",
    "MessageTemplate",
    "assign",
    "bucket",
    "build_audience",
    "export_audience",
    "load_campaigns",
    "measure",
    "render",
    "srm",
]

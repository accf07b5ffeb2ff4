"""Decisions: what to show a person now and on which channel to follow up (``/v1/decide``),
and how feedback (``/v1/feedback``) teaches the policy. Pure functions; no store access."""

from segone.decisions.catalogue import CatalogueIndex
from segone.decisions.channel import (
    ChannelChoice,
    apply_channel_delta,
    channel_key,
    choose_channel,
    consented,
    contacts_in_window,
    suppressed,
)
from segone.decisions.context import Context, context_group, parse_context
from segone.decisions.decide import Decision, decide, decision_keys, feedback_deltas
from segone.decisions.policy import (
    FEEDBACK_KINDS,
    POLICY_NAME,
    POLICY_VERSION,
    PolicyParams,
    Prior,
    PriorArrays,
    Ranked,
    Ranking,
    key_lists,
    keys_for,
    rank,
    thompson,
    update,
)
from segone.decisions.settings import DecisionSettings
from segone.exceptions import DecisionError

__all__ = [
    "FEEDBACK_KINDS",
    "POLICY_NAME",
    "POLICY_VERSION",
    "CatalogueIndex",
    "ChannelChoice",
    "Context",
    "Decision",
    "DecisionError",
    "DecisionSettings",
    "PolicyParams",
    "Prior",
    "PriorArrays",
    "Ranked",
    "Ranking",
    "apply_channel_delta",
    "channel_key",
    "choose_channel",
    "consented",
    "contacts_in_window",
    "context_group",
    "decide",
    "decision_keys",
    "feedback_deltas",
    "key_lists",
    "keys_for",
    "parse_context",
    "rank",
    "suppressed",
    "thompson",
    "update",
]

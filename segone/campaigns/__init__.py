"""Campaigns: audiences, destinations, messages, holdouts and lift.

The layer above segments and decisions: it turns who a person is (segments, stage, scores,
decisions) into something sent to them, and measures what that caused against held-out people.
"""

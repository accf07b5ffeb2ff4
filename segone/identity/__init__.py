"""Identity resolution: one customer per real person, across channels and spellings."""

from segone.identity.graph import IdentitySettings
from segone.identity.resolve import IdentityResult, resolve

__all__ = ["IdentityResult", "IdentitySettings", "resolve"]

"""E-mail providers and their alias rules, and the one-value normalisers that apply them.

Written once for both paths: ``segone.identity.normalize`` folds aliases in Ibis over a whole
column, ``norm_email`` / ``norm_phone`` here do it in plain Python for one value (the live
path, ``segone.live.identity``, and the tracer of erased people, ``segone.identity.traces``).
A test runs both on the same inputs. Plain Python only: no Ibis, nothing above this module.
"""

from __future__ import annotations

import re

#: Providers where dots in the local part are ignored and "+tag" is an alias.
DOTLESS = ("gmail.com", "googlemail.com")
#: Providers that deliver "name+tag@" to "name@".
PLUS = (
    *DOTLESS,
    "outlook.com",
    "hotmail.com",
    "live.com",
    "icloud.com",
    "proton.me",
    "protonmail.com",
    "yahoo.com",
    "fastmail.com",
)
#: Domains that are another spelling of the same mailbox's domain.
DOMAIN_ALIASES = {"googlemail.com": "gmail.com"}

TRIM = " \t\n\r\x0b\x0c"  # the characters the warehouse's TRIM removes

# RE2's \s is [\t\n\f\r ]; Python's is wider, so the classes are spelt out
_EMAIL_OK = re.compile(r"[^@\t\n\f\r ]+@[^@\t\n\f\r ]+\.[a-z]{2,}\Z")
_NOT_DIGIT = re.compile(r"[^0-9]")


def norm_email(value: str | None) -> str | None:
    """``normalize.email`` in Python: lower-case, provider aliases folded, None if not one."""
    if value is None:
        return None
    e = value.strip(TRIM).lower()
    if not _EMAIL_OK.match(e):
        return None
    local, domain = e.split("@", 1)
    domain = DOMAIN_ALIASES.get(domain, domain)
    if domain in PLUS:
        local = re.sub(r"\+.*", "", local)
    if domain in DOTLESS:
        local = local.replace(".", "")
    return f"{local}@{domain}"


def norm_phone(value: str | None, default_country_code: str = "1") -> str | None:
    """``normalize.phone`` in Python: E.164, national numbers get the default country code."""
    if value is None:
        return None
    raw = value.strip(TRIM)
    digits = _NOT_DIGIT.sub("", raw)
    if raw.startswith("00"):
        digits = digits[2:]
    nanp = default_country_code == "1" and len(digits) == 11 and digits.startswith("1")
    if raw.startswith(("+", "00")) or nanp:  # already has its country code
        full = digits
    elif digits.startswith("0"):
        full = default_country_code + digits[1:]
    else:
        full = default_country_code + digits
    return "+" + full if len(digits) >= 7 else None


def plain(value: str | None) -> str | None:
    """Opaque ids in Python (``normalize.plain``): trimmed, empty as None."""
    if value is None:
        return None
    v = value.strip(TRIM)
    return v or None

"""Contact points normalised and SHA-256-hashed the way each ad platform's docs require.

A hash only matches the platform's own if both sides normalise the same way, and the rules
differ: Meta wants the phone as digits with the country code and no ``+``; Google wants E.164
with the ``+``.
The rules (as documented by each platform, December 2026):

* Meta Custom Audiences — EMAIL: trim, lowercase. PHONE: digits only, country code included,
  no leading zeros. Then lowercase hex SHA-256.
* Google Customer Match — email: trim, lowercase (the ``UserIdentifier`` reference asks for
  nothing more; an older rule removed the dots of gmail.com local parts, which the current
  reference no longer states). phone: E.164 (``+`` country code and number, digits only). Then
  lowercase hex SHA-256. One identifier per ``UserIdentifier`` object.

A number written nationally (``07700 900123``) needs a country: ``default_country_code`` (e.g.
``"44"``) replaces its trunk ``0``; without one the number is refused rather than guessed.
"""

from __future__ import annotations

import hashlib
import re

_NOT_DIGIT = re.compile(r"\D")


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def email(value: str) -> str | None:
    """Trimmed and lowercased; None when it is not an address (no ``@`` with text around it)."""
    v = value.strip().lower()
    local, at, domain = v.rpartition("@")
    if not at or not local or not domain or " " in v:
        return None
    return v


def google_email(value: str) -> str | None:
    """Google's normal form: trimmed and lowercased (as ``email``)."""
    return email(value)


def phone_digits(value: str, default_country_code: str | None = None) -> str | None:
    """Country code and number as digits (``447700900123``); None when it cannot be told.

    ``+44 7700 900123`` and ``0044 7700 900123`` are international; ``07700 900123`` is national
    and takes ``default_country_code`` in place of its trunk 0.
    """
    # "+44 (0)20 ..." writes the national trunk 0 in brackets: it is not dialled from abroad
    v = value.strip().replace("(0)", "")
    if not v:
        return None
    international = v.startswith("+")
    digits = _NOT_DIGIT.sub("", v)
    if not international and digits.startswith("00"):
        digits, international = digits[2:], True
    if not international:
        if not default_country_code:
            return None
        digits = _NOT_DIGIT.sub("", default_country_code) + digits.lstrip("0")
    digits = digits.lstrip("0")
    # E.164: at most 15 digits; fewer than 8 cannot be a full international number
    if not 8 <= len(digits) <= 15:
        return None
    return digits


def e164(value: str, default_country_code: str | None = None) -> str | None:
    """``+`` and the digits of ``phone_digits`` (what SMS providers and Google expect)."""
    d = phone_digits(value, default_country_code)
    return None if d is None else "+" + d


def meta_email_hash(value: str | None) -> str:
    """Meta's EMAIL key: SHA-256 of the trimmed lowercase address; "" when missing/invalid."""
    v = email(value) if value else None
    return sha256(v) if v else ""


def meta_phone_hash(value: str | None, default_country_code: str | None = None) -> str:
    """Meta's PHONE key: SHA-256 of digits with country code, no ``+``; "" when missing."""
    v = phone_digits(value, default_country_code) if value else None
    return sha256(v) if v else ""


def google_email_hash(value: str | None) -> str | None:
    v = google_email(value) if value else None
    return sha256(v) if v else None


def google_phone_hash(value: str | None, default_country_code: str | None = None) -> str | None:
    v = e164(value, default_country_code) if value else None
    return sha256(v) if v else None


def subscriber_hash(value: str) -> str:
    """Mailchimp's member id: MD5 of the lowercased address (its documented subscriber hash)."""
    return hashlib.md5(value.strip().lower().encode(), usedforsecurity=False).hexdigest()

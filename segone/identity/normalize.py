"""Identifier normalisation as Ibis expressions: the same person's e-mail, phone or handle
written differently becomes one node of the identity graph."""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from segone.identity.providers import DOMAIN_ALIASES, DOTLESS, PLUS


def email(col: ir.StringValue) -> ir.StringValue:
    """Lower-case, trimmed; provider aliases folded where the provider defines them.

    ``Jane.Doe+shop@GoogleMail.com`` -> ``janedoe@gmail.com``. A value that is not shaped like
    an e-mail address becomes null (it cannot identify anyone).
    """
    e = col.strip().lower()
    ok = e.re_search(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$")
    local = e.re_extract(r"^([^@]+)@", 1)
    domain = e.re_extract(r"@(.+)$", 1)
    for alias, canonical in DOMAIN_ALIASES.items():
        domain = ibis.ifelse(domain == alias, ibis.literal(canonical), domain)
    local = ibis.ifelse(domain.isin(list(PLUS)), local.re_replace(r"\+.*$", ""), local)
    local = ibis.ifelse(domain.isin(list(DOTLESS)), local.replace(".", ""), local)
    return ibis.ifelse(ok, local + "@" + domain, ibis.null("string"))


def phone(col: ir.StringValue, default_country_code: str = "1") -> ir.StringValue:
    """E.164 (``+15551234567``) from common national and international spellings.

    Digits only; a leading ``+`` or ``00`` means the number already has its country code;
    otherwise a national number gets ``default_country_code`` (a leading trunk ``0`` is
    dropped; for NANP numbers, 10 digits or 11 starting with 1). Fewer than 7 digits is null.
    """
    raw = col.strip()
    digits = raw.re_replace(r"[^0-9]", "")
    intl = raw.startswith("+") | raw.startswith("00")
    digits = ibis.ifelse(raw.startswith("00"), digits.substr(2), digits)
    cc = ibis.literal(default_country_code)
    national = ibis.cases(
        ((cc == "1") & (digits.length() == 11) & digits.startswith("1"), digits),
        (digits.startswith("0"), cc + digits.substr(1)),
        else_=cc + digits,
    )
    full = ibis.ifelse(intl, digits, national)
    return ibis.ifelse(digits.length() >= 7, "+" + full, ibis.null("string"))


def handle(col: ir.StringValue) -> ir.StringValue:
    """Social handle: lower-case, without the leading ``@``."""
    h = col.strip().lower().re_replace(r"^@+", "")
    return h.nullif("")


def plain(col: ir.StringValue) -> ir.StringValue:
    """Opaque ids (user ids, cookies, card numbers): trimmed, empty as null; case kept."""
    return col.strip().nullif("")


def name(col: ir.StringValue) -> ir.StringValue:
    """Names for matching: lower-case letters only."""
    return col.lower().re_replace(r"[^a-z]", "").nullif("")

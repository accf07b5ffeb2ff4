"""Traces of a person in raw text, and the salted hashes erased identifiers are kept as.

Pure Python (no Ibis), so the online writer can use it on every request: ``identifier_hashes``
for the refusal of an erased person's messages, ``text_identifiers`` for messages that could not
even be parsed (the quarantine), and ``Mentions`` to find the quarantined records of a person
being erased, whatever their spelling (``Jane.Doe@GMAIL.com``, ``503.716.5804``).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterable
from typing import Any

import orjson

# a token shaped like an e-mail address, cut at JSON / CSV punctuation
_EMAIL = re.compile(r"[^\s@\"'<>(),;:\[\]{}\\/]+@[^\s@\"'<>(),;:\[\]{}\\/]+\.[A-Za-z]{2,}")
# a phone number in any of the usual spellings: +1 (503) 716-5804, 503.716.5804, 0044 20 ...
_PHONE = re.compile(r"\+?\d[\d \-.()/]{5,}\d")
_TOKEN = re.compile(r"[\s\"',;{}\[\]=|]+")
# message fields that hold plain identifiers (Segment spec and the warehouse's column names)
_ID_FIELDS = {
    "userId": "user_id",
    "user_id": "user_id",
    "anonymousId": "anonymous_id",
    "anonymous_id": "anonymous_id",
    "previousId": "anonymous_id",
}


def hash_node(salt: str, node: str) -> str:
    """The salted SHA-256 of a normalised identifier (``"email:jane@x.com"``), hex."""
    return hashlib.sha256((salt + node).encode()).hexdigest()


def identifier_hashes(nodes: Iterable[str], salts: Iterable[str]) -> dict[str, str]:
    """hash -> node, for every node under every salt."""
    salts = list(salts)
    return {hash_node(s, n): n for n in nodes for s in salts}


def _walk(obj: Any, out: set[str]) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            kind = _ID_FIELDS.get(str(k))
            if kind is not None and isinstance(v, str | int) and not isinstance(v, bool):
                value = str(v).strip()
                if value:
                    out.add(f"{kind}:{value}")
            _walk(v, out)
    elif isinstance(obj, list):
        for v in obj:
            _walk(v, out)


def text_identifiers(text: str, default_country_code: str = "1") -> set[str]:
    """The normalised identifiers (``type:value``) a raw text may carry: every e-mail-shaped and
    phone-shaped token, and the user / anonymous ids of a JSON message."""
    out = contact_identifiers(text, default_country_code)
    if "{" in text:
        with contextlib.suppress(orjson.JSONDecodeError):
            _walk(orjson.loads(text), out)
    return out


def contact_identifiers(text: str, default_country_code: str = "1") -> set[str]:
    """Every e-mail-shaped and phone-shaped token of a text, normalised (``email:...``,
    ``phone:+1...``): a message naming someone outside its traits names them all the same."""
    from segone.identity.providers import norm_email, norm_phone

    out: set[str] = set()
    for m in _EMAIL.findall(text):
        e = norm_email(m)
        if e:
            out.add("email:" + e)
    for m in _PHONE.findall(text):
        p = norm_phone(m.strip(" -.()/"), default_country_code)
        if p:
            out.add("phone:" + p)
    return out


class Mentions:
    """``Mentions(nodes)(text)``: does a raw record mention one of these identifiers?

    Exact on normalised e-mails and phones found anywhere in the text, on the user and anonymous
    ids of a JSON message, and on whole tokens for other identifiers (handles, source ids, long
    user ids in CSV text), case-insensitively; a phone also matches its national digits inside
    the text's digits (a number split over fields). Substrings of other people's values (``
    jane@x.com`` in ``mary.jane@x.com``) do not match.
    """

    def __init__(self, nodes: Iterable[str], default_country_code: str = "1") -> None:
        self.nodes = set(nodes)
        self.cc = default_country_code
        self.tokens: set[str] = set()
        self.digits: set[str] = set()
        for n in self.nodes:
            kind, _, value = n.partition(":")
            if kind == "phone":
                d = value.lstrip("+")
                cc = default_country_code
                self.digits.add(d[len(cc) :] if d.startswith(cc) and len(d) > 9 else d)
            elif kind != "email" and len(value) >= 3:
                self.tokens.add(value.lower())
                if kind == "handle":
                    self.tokens.add("@" + value.lower())

    def __call__(self, text: Any) -> bool:
        if text is None or not self.nodes:
            return False
        t = text if isinstance(text, str) else str(text)
        if text_identifiers(t, self.cc) & self.nodes:
            return True
        if self.tokens and self.tokens & {w.lower() for w in _TOKEN.split(t)}:
            return True
        if self.digits:
            only = re.sub(r"[^0-9]", "", t)
            return any(d in only for d in self.digits)
        return False

"""The catalogue prepared once for fast decisions: ids, popularity, exclusion flags and
category codes as arrays, and the counter keys per (placement, group) cached.

Catalogue documents (online store kind ``"catalogue"``, key item id) may carry ``name``,
``category`` (``A > B > C``), ``popularity`` (any non-negative scale, e.g. buyers in the last
90 days), ``suppressed: true`` or ``active: false`` (never shown), ``price`` and
``usual_price``, ``feature``/``promotion`` and ``display`` flags, and what the last build
learned (``preference_prior``, ``repurchase``, ``buy_again``: ``segone.models.preference``). Build a
:class:`CatalogueIndex` when the catalogue changes and pass it to ``decide`` in place of the
documents: ranking the whole catalogue then costs array operations, not a loop over documents.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from math import nan
from typing import Any

import numpy as np
from numpy.typing import NDArray

from segone.decisions.policy import escape

_KEY_CACHE = 256  # (placement, group) pairs whose keys are kept; beyond it the cache restarts


def popularity(doc: Mapping[str, Any]) -> float:
    """A document's ``popularity`` (NaN when missing or not a non-negative number)."""
    return _nonneg(doc, "popularity")


def _nonneg(doc: Mapping[str, Any], key: str) -> float:
    v = doc.get(key)
    return float(v) if (type(v) is float or type(v) is int) and v >= 0 else nan


def _usual(doc: Mapping[str, Any]) -> float:
    v = _nonneg(doc, "usual_price")
    return _nonneg(doc, "price") if v != v else v


@dataclass(frozen=True)
class Rule:
    """One published association rule ending in an item: people who bought every item of
    ``antecedent`` (in one order for ``basket``, earlier for ``sequence``) bought it with
    probability ``confidence``, ``lift`` times as often as everyone, seen ``count`` times."""

    kind: str
    antecedent: frozenset[str]
    names: tuple[str, ...]
    confidence: float
    lift: float
    count: int

    @classmethod
    def parse(cls, raw: Any) -> Rule | None:
        """A rule from its published form (None when it is not one)."""
        if not isinstance(raw, Mapping):
            return None
        ante = raw.get("if")
        conf, lift, n = (_nonneg(raw, k) for k in ("confidence", "lift", "count"))
        if not isinstance(ante, list) or not ante or not all(isinstance(a, str) for a in ante):
            return None
        if conf != conf or lift != lift or n != n:  # NaN: missing or not a number
            return None
        names = raw.get("if_names")
        if not (isinstance(names, list) and len(names) == len(ante)):
            names = ante
        return cls(
            str(raw.get("kind") or "basket"),
            frozenset(ante),
            tuple(str(x) for x in names),
            float(conf),
            float(lift),
            int(n),
        )


def _flag(doc: Mapping[str, Any], *keys: str) -> bool:
    return any(doc.get(k) is True or doc.get(k) == 1 for k in keys)


class CatalogueIndex(Mapping[str, Mapping[str, Any]]):
    """Read-only view of catalogue documents, with the arrays ``decide`` needs."""

    def __init__(self, docs: Mapping[str, Mapping[str, Any]]) -> None:
        self._docs = dict(docs)
        self.ids: list[str] = list(self._docs)
        self.pos: dict[str, int] = {i: k for k, i in enumerate(self.ids)}
        values = list(self._docs.values())
        self._values = values
        #: (the index this one is a subset of, the positions in it): see ``subset``
        self._parent: tuple[CatalogueIndex, NDArray[np.intp]] | None = None
        #: the last subset asked for, by its ids (``decision_keys`` then ``decide`` ask twice)
        self._last: tuple[tuple[str, ...], CatalogueIndex] | None = None
        n = len(values)
        self.popularity: NDArray[np.float64] = np.fromiter(map(popularity, values), np.float64, n)
        self.blocked: NDArray[np.bool_] = np.fromiter(
            (d.get("suppressed") is True or d.get("active") is False for d in values), np.bool_, n
        )
        codes: dict[Any, int] = {}
        self.category_codes: NDArray[np.int64] = np.fromiter(
            (codes.setdefault(d.get("category"), len(codes)) for d in values), np.int64, n
        )
        #: the category of each code (None or a non-string for items without one)
        self.categories: list[Any] = list(codes)
        self._escaped = [escape(i) for i in self.ids]
        self._keys: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
        self._learned: dict[str, NDArray[np.float64]] = {}

    @cached_property
    def popularity_top(self) -> float:
        """The highest known popularity (0 when none is known)."""
        known = self.popularity[~np.isnan(self.popularity)]
        return float(known.max()) if len(known) else 0.0

    @cached_property
    def popularity_median(self) -> float:
        """The median known popularity (0 when none is known)."""
        known = self.popularity[~np.isnan(self.popularity)]
        return float(np.median(known)) if len(known) else 0.0

    def subset(self, ids: Iterable[str]) -> CatalogueIndex:
        """The index of some of its items (in the order given, each once; every one must be
        in it): the same as ``CatalogueIndex({i: self[i] for i in ids})``, its arrays sliced
        from this one's (computed once per catalogue) instead of parsed again from the
        documents, so a request's candidate list costs indexing, not a loop over documents.
        Raises ``KeyError`` for an id not in it."""
        want = list(dict.fromkeys(ids))
        key = tuple(want)
        last = self._last
        if last is not None and last[0] == key:
            return last[1]
        at = np.fromiter(map(self.pos.__getitem__, want), np.intp, len(want))
        sub = object.__new__(CatalogueIndex)
        sub._docs = {i: self._docs[i] for i in want}
        sub.ids = want
        sub.pos = {i: k for k, i in enumerate(want)}
        sub._values = list(sub._docs.values())
        sub._parent = (self, at)
        sub._last = None
        sub.popularity = self.popularity[at]
        sub.blocked = self.blocked[at]
        # codes index the parent's categories: the same category, the same code
        sub.category_codes = self.category_codes[at]
        sub.categories = self.categories
        sub._escaped = [self._escaped[k] for k in at.tolist()]
        sub._keys = {}
        sub._learned = {}
        self._last = (key, sub)
        return sub

    def __getitem__(self, key: str) -> Mapping[str, Any]:
        return self._docs[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids)

    def __len__(self) -> int:
        return len(self.ids)

    # what only some decisions need (the preference model, offers, reasons) is computed on
    # first use: a request's candidate list builds an index per request
    @cached_property
    def preference_prior(self) -> NDArray[np.float64]:
        """The preference model's pseudo-count of each item (NaN: not in the last fit)."""
        if self._parent is not None:
            return self._parent[0].preference_prior[self._parent[1]]
        return np.fromiter(
            (_nonneg(d, "preference_prior") for d in self._values), np.float64, len(self.ids)
        )

    def learned(self, key: str) -> NDArray[np.float64]:
        """A non-negative number the last build published on every item (``within_prior``,
        ``category_prior``...: ``segone.models.preference``), NaN where it is missing; cached."""
        got = self._learned.get(key)
        if got is None:
            if self._parent is not None:
                got = self._parent[0].learned(key)[self._parent[1]]
            else:
                got = np.fromiter((_nonneg(d, key) for d in self._values), np.float64, len(self))
            self._learned[key] = got
        return got

    @cached_property
    def buy_again(self) -> NDArray[np.bool_]:
        """Whether an item its owner may buy again is offered to them (the last fit's
        ``buy_again``; False where it did not see the item)."""
        if self._parent is not None:
            return self._parent[0].buy_again[self._parent[1]]
        return np.fromiter((d.get("buy_again") is True for d in self._values), np.bool_, len(self))

    @cached_property
    def associations(self) -> dict[int, list[Rule]]:
        """Per item position, the association rules that end in it (``associations`` of its
        document: ``segone.models.association``), most confident first; items without are
        absent."""
        out: dict[int, list[Rule]] = {}
        if self._parent is not None:
            parent, at = self._parent
            here = dict(zip(at.tolist(), range(len(at)), strict=True))
            return {here[k]: r for k, r in parent.associations.items() if k in here}
        for k, d in enumerate(self._values):
            raw = d.get("associations")
            if not isinstance(raw, list):
                continue
            rules = [r for x in raw if (r := Rule.parse(x)) is not None]
            if rules:
                out[k] = sorted(rules, key=lambda r: -r.confidence)
        return out

    @cached_property
    def price(self) -> NDArray[np.float64]:
        """Price now (NaN when unknown)."""
        if self._parent is not None:
            return self._parent[0].price[self._parent[1]]
        return np.fromiter((_nonneg(d, "price") for d in self._values), np.float64, len(self))

    @cached_property
    def usual_price(self) -> NDArray[np.float64]:
        """Usual price: ``usual_price``, else ``price`` (NaN when unknown)."""
        if self._parent is not None:
            return self._parent[0].usual_price[self._parent[1]]
        return np.fromiter(map(_usual, self._values), np.float64, len(self))

    @cached_property
    def feature(self) -> NDArray[np.bool_]:
        """A feature ad or promotion flag (``feature`` or ``promotion`` true)."""
        if self._parent is not None:
            return self._parent[0].feature[self._parent[1]]
        return np.fromiter(
            (_flag(d, "feature", "promotion") for d in self._values), np.bool_, len(self)
        )

    @cached_property
    def display(self) -> NDArray[np.bool_]:
        """An in-store display flag."""
        if self._parent is not None:
            return self._parent[0].display[self._parent[1]]
        return np.fromiter((_flag(d, "display") for d in self._values), np.bool_, len(self))

    @cached_property
    def names(self) -> list[str | None]:
        """Each item's ``name`` (None when the catalogue has none)."""
        if self._parent is not None:
            names = self._parent[0].names
            return [names[k] for k in self._parent[1].tolist()]
        return [
            d["name"] if isinstance(d.get("name"), str) and d["name"].strip() else None
            for d in self._values
        ]

    def label(self, k: int) -> str:
        """What reasons call item ``k``: its name, else its id."""
        return self.names[k] or self.ids[k]

    def keys_for_all(self, placement: str, group: str) -> tuple[list[str], list[str]]:
        """(global keys, group keys) of every item, aligned with ``ids`` (cached)."""
        got = self._keys.get((placement, group))
        if got is None and self._parent is not None:
            gl, gr = self._parent[0].keys_for_all(placement, group)
            at = self._parent[1].tolist()
            got = ([gl[k] for k in at], [gr[k] for k in at])
            self._keys[(placement, group)] = got
        elif got is None:
            g = f"ts|{escape(placement)}|"
            c = f"{g}{escape(group)}|"
            got = ([g + i for i in self._escaped], [c + i for i in self._escaped])
            if len(self._keys) >= _KEY_CACHE:
                self._keys = {}
            self._keys[(placement, group)] = got
        return got

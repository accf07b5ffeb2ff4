"""How a person shows up in a record: the identity tokens behind each record, name, e-mail
and phone variants, local times."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from segone.datasets.sample.common import (
    _Block,
    _iso,
    _shown,
)


class _Identities(_Block):
    # -- helpers ------------------------------------------------------------------------------
    def _promo(self, t: np.ndarray) -> np.ndarray:
        d = t.astype("datetime64[s]").astype("datetime64[D]")
        md = (d - d.astype("datetime64[M]")).astype(int) + 1
        m = d.astype("datetime64[M]").astype(int) % 12 + 1
        return ((m == 11) & (md >= 20)) | ((m == 1) & (md <= 10)) | ((m == 7) & (md <= 14))

    def _rec(
        self,
        table: str,
        key: np.ndarray,
        person: np.ndarray,
        bad: np.ndarray | None = None,
        source: str | None = None,
        ids: tuple[np.ndarray, ...] = (),
    ) -> pa.Table:
        """The truth of records shown; ``ids`` are their identity tokens (see _link_groups)."""
        n = len(key)
        for tok in ids:
            at = np.flatnonzero(_shown(tok))
            self._tokens.append((self._n_records + at, tok[at]))
        self._n_records += n
        return pa.table(
            {
                "table": pa.array([table] * n, pa.string()),
                "source": pa.array([source] * n, pa.string()),
                "key": pa.array(list(key), pa.string()),
                "person_id": pa.array(person + self.first_person, pa.int64()),
                "rejected": pa.array(bad if bad is not None else np.zeros(n, bool)),
            }
        )

    @staticmethod
    def _names(P: dict[str, np.ndarray], who: np.ndarray) -> np.ndarray:
        """``first|last|`` of the true names, to join with another field (a name-match token)."""
        return np.char.add(
            np.char.add(np.char.add(P["first"][who].astype(str), "|"), P["last"][who].astype(str)),
            "|",
        ).astype(object)

    def _email_variant(self, email: np.ndarray, rate: float) -> np.ndarray:
        rng = self.rng
        out = email.copy()
        pick = rng.random(len(email)) < rate
        kind = rng.integers(0, 3, len(email))
        for i in np.flatnonzero(pick):
            e = out[i]
            local, _, dom = e.partition("@")
            if kind[i] == 0:
                out[i] = e.upper() if rng.random() < 0.3 else local.capitalize() + "@" + dom
            elif kind[i] == 1 and dom == "gmail.com":
                out[i] = (
                    local.replace(".", "") + "@googlemail.com"
                    if "." in local
                    else local + "+shop@" + dom
                )
            else:
                out[i] = " " + e + " "
        return out

    def _phone_variant(self, phone: np.ndarray) -> np.ndarray:
        kind = self.rng.integers(0, 5, len(phone))
        out = np.empty(len(phone), dtype=object)
        for i, (p, k) in enumerate(zip(phone, kind, strict=True)):
            a, b, c = p[2:5], p[5:8], p[8:]
            out[i] = (p, f"({a}) {b}-{c}", f"{a}.{b}.{c}", f"+1 {a} {b} {c}", f"{a}{b}{c}")[k]
        return out

    def _local_time(self, t: np.ndarray, local: np.ndarray) -> np.ndarray:
        """UTC 'Z' text, or US Eastern-ish local time with its offset where ``local``."""
        utc = _iso(t).astype(object)
        loc = np.char.add(
            np.datetime_as_string((t - 5 * 3600).astype("datetime64[s]"), unit="s"), "-05:00"
        )
        return np.where(local, loc, utc)

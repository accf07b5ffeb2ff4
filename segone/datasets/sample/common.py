"""The generator's shared parts: its settings, the numpy helpers every concern uses, and
``_Block``, the state of one block of people that each concern's methods work on."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from segone.datasets import vocab

if TYPE_CHECKING:
    from segone.datasets.sample.catalog import _Catalog
    from segone.datasets.sample.sink import _Sink


DAY = 86_400
CHANNELS = ("shop", "crm", "loyalty", "social")


BLOCK = 50_000  # people generated at a time: memory stays flat however many are asked for


@dataclass(frozen=True)
class SampleConfig:
    customers: int = 10_000
    seed: int = 0
    start: str = "2023-01-01"
    end: str = "2024-12-31"
    bad_row_rate: float = 0.0005  # share of records deliberately made invalid
    duplicate_rate: float = 0.002  # share of events re-sent with the same messageId
    block_size: int = BLOCK


def _epoch(d: str) -> int:
    return int(datetime.fromisoformat(d).replace(tzinfo=UTC).timestamp())


def _iso(ts: np.ndarray) -> np.ndarray:
    """Seconds since epoch -> 'YYYY-MM-DDTHH:MM:SSZ' strings."""
    return np.char.add(np.datetime_as_string(ts.astype("datetime64[s]"), unit="s"), "Z")


def _pick(rng: np.random.Generator, values: Any, n: int, p: Any = None) -> np.ndarray:
    arr = np.asarray(list(values), dtype=object)
    return arr[rng.choice(len(arr), size=n, p=p)]


def _typo(rng: np.random.Generator, names: np.ndarray, rate: float) -> np.ndarray:
    """Introduce a realistic typo (drop, double or swap a letter) into a share of names."""
    out = names.copy()
    idx = np.flatnonzero(rng.random(len(names)) < rate)
    ops = rng.integers(0, 3, len(idx))
    pos = rng.random(len(idx))
    for i, op, r in zip(idx, ops, pos, strict=True):
        s = out[i]
        if len(s) < 4:
            continue
        k = 1 + int(r * (len(s) - 2))
        if op == 0:
            out[i] = s[:k] + s[k + 1 :]
        elif op == 1:
            out[i] = s[:k] + s[k] + s[k:]
        else:
            out[i] = s[: k - 1] + s[k] + s[k - 1] + s[k + 1 :]
    return out


def _draw(cum: np.ndarray, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Categorical draws: for each i, the first column j with cum[rows[i], j] >= u[i] (chunked)."""
    out = np.empty(len(rows), np.int64)
    last = cum.shape[1] - 1
    for s in range(0, len(rows), 250_000):
        sl = slice(s, s + 250_000)
        out[sl] = np.minimum((cum[rows[sl]] < u[sl, None]).sum(axis=1), last)
    return out


def _ids(prefix: str, numbers: np.ndarray, width: int) -> np.ndarray:
    """``prefix`` + zero-padded numbers, as an object array (works for empty input too)."""
    return np.array([f"{prefix}{int(i):0{width}d}" for i in numbers], dtype=object)


def _abbreviate(address: str) -> str:
    for full, abbr in vocab.STREET_SUFFIX_ABBR.items():
        if address.endswith(full):
            return address[: -len(full)] + abbr + "."
    return address


def _tok(kind: str, values: np.ndarray, shown: np.ndarray | None = None) -> np.ndarray:
    """``kind:value`` identity tokens of records (None where the record does not show it)."""
    values = np.asarray(values, dtype=object)
    present = _shown(values)
    if shown is not None:
        present &= np.asarray(shown, dtype=bool)
    out = np.full(len(values), None, dtype=object)
    out[present] = np.char.add(kind + ":", values[present].astype(str)).astype(object)
    return out


def _shown(column: np.ndarray) -> np.ndarray:
    return np.asarray(pd.notna(column), dtype=bool)


def _link_groups(
    person: np.ndarray, rejected: np.ndarray, rows: np.ndarray, tokens: np.ndarray
) -> np.ndarray:
    """Each record's group of the records of its person it could be linked with, in principle.

    Two records are linkable when they show the same true identifier (an e-mail, however it is
    written; a phone; a user id, cookie, CRM id, loyalty card, handle) or the same name and one
    more field (postcode, street address, city or birth date; typos do not count against it).
    An identifier shown by two people (a family e-mail, a kiosk) links nothing. Groups are the
    connected components of that relation; a rejected record is a group of its own.
    """
    n = len(person)
    keep = ~rejected[rows]
    rows, tokens = rows[keep], tokens[keep]
    codes, uniques = pd.factorize(tokens)
    owners = pd.DataFrame({"t": codes, "p": person[rows]}).drop_duplicates()
    shared = owners.t.value_counts()
    private = ~np.isin(codes, shared.index[shared > 1].to_numpy())
    rows, codes = rows[private], codes[private]
    graph = coo_matrix(
        (np.ones(len(rows), dtype=np.int8), (rows, n + codes)), shape=(n + len(uniques),) * 2
    )
    _, labels = connected_components(graph, directed=False)
    return labels[:n].astype(np.int64)


def _hex_ids(rng: np.random.Generator, n: int, nbytes: int) -> np.ndarray:
    """``n`` random hexadecimal ids of ``nbytes`` bytes (vectorised)."""
    raw = rng.bytes(n * nbytes).hex().encode()
    return np.frombuffer(raw, dtype=f"S{2 * nbytes}").astype(str).astype(object)


def _ts(a: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """Seconds since epoch -> Arrow UTC timestamps (null where not ``valid``)."""
    return pa.array(
        a.astype("datetime64[s]"), pa.timestamp("s", "UTC"), mask=None if valid is None else ~valid
    )


class _Block:
    """One block of people (blocks keep memory flat however many people are asked for)."""

    def __init__(
        self,
        cfg: SampleConfig,
        *,
        n: int,
        block: int,
        sink: _Sink,
        catalog: _Catalog,
        offsets: dict[str, int],
    ) -> None:
        self.cfg = cfg
        self.rng = np.random.default_rng([cfg.seed, block])
        self.t0 = _epoch(cfg.start)
        self.t1 = _epoch(cfg.end) + DAY - 1
        self.n = n
        self.block = block
        self.first_person = block * cfg.block_size
        self.sink = sink
        self.catalog = catalog
        self.offsets = offsets
        # identity tokens of the records shown, (record numbers, tokens), for the truth
        self._tokens: list[tuple[np.ndarray, np.ndarray]] = []
        self._n_records = 0

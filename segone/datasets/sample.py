"""A realistic multichannel store with ground truth, generated deterministically from a seed.

Real people appear under 1-4 identities (web shop account with cookies, CRM contact, loyalty
card, social handle) with typos and formatting variants; some share a family e-mail or a
kiosk device (traps for over-merging). Purchases follow a heterogeneous buy-till-you-die
process (Pareto/NBD-like rates, geometric drop-out), discount seekers buy on promotion, VIPs
buy more, some lines are returned, and some people's tastes move at a known date after a life
event. Web, e-mail and social behaviour follow each person's own propensities.

What segone is shown (``data/``) and what really happened (``truth/``) are written apart.
Everything is vectorised with numpy; 100k people take a few seconds.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from faker.providers.person.en_US import Provider as PersonProvider
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from segone.datasets import vocab

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


@dataclass
class _Catalog:
    """The product catalogue: 20 products in each leaf category."""

    ids: np.ndarray
    names: np.ndarray
    categories: np.ndarray
    prices: np.ndarray
    brands: np.ndarray
    leaf_products: list[np.ndarray]

    @classmethod
    def build(cls, rng: np.random.Generator) -> _Catalog:
        rows: list[tuple[str, str, str, float, str]] = []
        leaves: list[np.ndarray] = []
        for li, (cat, base, nouns) in enumerate(vocab.CATEGORIES):
            start = len(rows)
            for j in range(20):
                adj = vocab.ADJECTIVES[(j * 7 + li) % len(vocab.ADJECTIVES)]
                price = round(float(base * rng.lognormal(0, 0.35)), 2)
                rows.append(
                    (f"P{len(rows):05d}", f"{adj} {nouns[j % len(nouns)]}", cat, price, adj)
                )
            leaves.append(np.arange(start, len(rows)))
        col = lambda i: np.array([r[i] for r in rows], dtype=object)  # noqa: E731
        out = cls(col(0), col(1), col(2), np.array([r[3] for r in rows]), col(4), leaves)
        out.plant_bundles()
        return out

    def plant_bundles(self) -> None:
        """Give the planted bundles' products (``vocab.BUNDLES``) the least popular places of
        their leaf categories (position 19, 18, ...) and their names; ``bundles`` holds them as
        (kind, antecedent products, consequent product, confidence, rate) and ``planted_only``
        marks the products sold only through a bundle."""
        leaf_of = {c: k for k, (c, _, _) in enumerate(vocab.CATEGORIES)}
        used: dict[str, int] = {}
        at: dict[tuple[str, str], int] = {}

        def place(leaf: str, name: str) -> int:
            if (leaf, name) not in at:
                slot = 19 - used.get(leaf, 0)
                used[leaf] = used.get(leaf, 0) + 1
                k = int(self.leaf_products[leaf_of[leaf]][slot])
                self.names[k] = name
                at[(leaf, name)] = k
            return at[(leaf, name)]

        self.bundles: list[tuple[str, list[int], int, float, float]] = []
        self.planted_only = np.zeros(len(self.ids), bool)
        for kind, ante, cons, conf, rate in vocab.BUNDLES:
            a = [place(*x) for x in ante]
            c = place(*cons)
            self.bundles.append((kind, a, c, conf, rate))
            self.planted_only[c] = True
            if len(a) == 1:
                self.planted_only[a[0]] = True

    def bundles_truth(self) -> pa.Table:
        """The planted bundles (``truth/bundles.csv``): antecedent ids and names joined by
        `` + ``, the consequent, the true confidence and how often the antecedents were planted."""
        rows = [
            {
                "kind": kind,
                "antecedent_ids": " + ".join(str(self.ids[k]) for k in a),
                "antecedent_names": " + ".join(str(self.names[k]) for k in a),
                "consequent_id": str(self.ids[c]),
                "consequent_name": str(self.names[c]),
                "confidence": conf,
                "rate": rate,
            }
            for kind, a, c, conf, rate in self.bundles
        ]
        return pa.Table.from_pylist(rows)

    def table(self) -> pa.Table:
        return pa.table(
            {
                "sku": self.ids,
                "title": self.names,
                "category": self.categories,
                "price": self.prices,
                "brand": self.brands,
            }
        )


class _Sink:
    """Appends each block's rows to the output files (CSV text, JSON Lines, truth Parquet)."""

    def __init__(self, out: Path) -> None:
        self.data, self.truth = out / "data", out / "truth"
        self.data.mkdir(parents=True, exist_ok=True)
        self.truth.mkdir(parents=True, exist_ok=True)
        self._csv: dict[str, pacsv.CSVWriter] = {}
        self._pq: dict[str, pq.ParquetWriter] = {}
        self._appended: set[str] = set()

    def csv(self, name: str, table: pa.Table) -> None:
        # every column as text, so blocks where a column is all empty share one schema
        table = table.cast(pa.schema([(f.name, pa.string()) for f in table.schema]))
        if name not in self._csv:
            self._csv[name] = pacsv.CSVWriter(self.data / name, table.schema)
        self._csv[name].write_table(table)

    def parquet(self, name: str, table: pa.Table) -> None:
        if name not in self._pq:
            self._pq[name] = pq.ParquetWriter(self.truth / f"{name}.parquet", table.schema)
        else:
            table = table.cast(self._pq[name].schema)
        self._pq[name].write_table(table)

    def append_file(self, name: str, part: Path) -> None:
        mode = "ab" if name in self._appended else "wb"
        with open(self.data / name, mode) as dst, open(part, "rb") as src:
            shutil.copyfileobj(src, dst, 1 << 22)
        part.unlink()
        self._appended.add(name)

    def close(self) -> None:
        for w in self._csv.values():
            w.close()
        for p in self._pq.values():
            p.close()


class _Gen:
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

    # -- people and identities ---------------------------------------------------------------
    def people(self) -> dict[str, np.ndarray]:
        rng, n = self.rng, self.n
        female = rng.random(n) < 0.5
        fn_f = list(PersonProvider.first_names_female)
        fn_m = list(PersonProvider.first_names_male)
        first = np.where(female, _pick(rng, fn_f, n), _pick(rng, fn_m, n))
        last = _pick(rng, list(PersonProvider.last_names), n)
        # two-person households: same surname and address; some share one family e-mail
        household = np.arange(n)
        pair = np.flatnonzero(
            (rng.random(n) < 0.08) & (np.arange(n) % 2 == 0) & (np.arange(n) + 1 < n)
        )
        household[pair + 1] = pair
        last[pair + 1] = last[pair]
        streets = np.char.add(
            np.char.add(_pick(rng, list(PersonProvider.last_names), n), " "),
            _pick(rng, vocab.STREET_SUFFIX_ABBR.keys(), n),
        )
        house_no = rng.integers(1, 9999, n).astype(str)
        address = np.char.add(np.char.add(house_no, " "), streets)
        towns = list(PersonProvider.last_names)[:40]
        cities = np.array(
            [f"{a}{b}" for a in towns for b in ("ville", "ton", "burg", "field")], dtype=object
        )
        city_idx = rng.integers(0, len(cities), n)
        city = cities[city_idx]
        postcode = _ids("", 10000 + (city_idx * 547) % 89_000 + rng.integers(0, 50, n), 5)
        address[pair + 1] = address[pair]
        city[pair + 1] = city[pair]
        postcode[pair + 1] = postcode[pair]
        age_days = rng.integers(18 * 365, 80 * 365, n)
        birth = (np.datetime64(self.cfg.end) - age_days.astype("timedelta64[D]")).astype(
            "datetime64[D]"
        )
        uniq = self.first_person + rng.permutation(n) + 1000  # unique across blocks
        domain = _pick(rng, vocab.EMAIL_DOMAINS, n, p=vocab.EMAIL_DOMAIN_WEIGHTS)
        style = rng.integers(0, 3, n)
        fl, ll = np.char.lower(first.astype(str)), np.char.lower(last.astype(str))
        local = np.where(
            style == 0,
            np.char.add(np.char.add(fl, "."), ll),
            np.where(
                style == 1,
                np.char.add(np.char.add(fl, "_"), ll),
                np.char.add(np.char.add(np.char.array(fl).astype("U1"), ""), ll),
            ),
        )
        email = np.char.add(np.char.add(np.char.add(local, uniq.astype(str)), "@"), domain).astype(
            object
        )
        family = pair[rng.random(len(pair)) < 0.5]
        fam_email = np.char.add(
            np.char.add(np.char.lower(last[family].astype(str)), "family"),
            np.char.add(uniq[family].astype(str), "@gmail.com"),
        ).astype(object)
        email[family] = fam_email
        email[family + 1] = fam_email
        area = _pick(rng, vocab.AREA_CODES, n)
        # 7919 is prime to 8,000,000, so distinct people get distinct numbers
        local_no = ((uniq * 7919 + 12345) % 8_000_000 + 2_000_000).astype(str)
        phone = np.char.add(np.char.add("+1", area.astype(str)), local_no).astype(object)
        user_id = _ids("u", uniq, 8)
        crm_id = _ids("CRM-", uniq, 7)
        loyalty_id = _ids("L", uniq * 7919 % 10**9, 10)
        handle = np.char.add(
            np.char.add("@", np.char.add(fl, ll)), (uniq % 997).astype(str)
        ).astype(object)
        # identities: k of the four channels, weighted
        k = rng.choice([1, 2, 3, 4], size=n, p=[0.45, 0.3, 0.17, 0.08])
        w = np.array([0.55, 0.25, 0.2, 0.15])
        keys = -np.log(rng.random((n, 4))) / w
        rank = keys.argsort(axis=1).argsort(axis=1)
        has = rank < k[:, None]
        return dict(
            first=first.astype(object),
            last=last.astype(object),
            female=female,
            household=household,
            address=address.astype(object),
            city=city,
            postcode=postcode.astype(object),
            birth=birth,
            email=email,
            phone=phone,
            area=area,
            user_id=user_id,
            crm_id=crm_id,
            loyalty_id=loyalty_id,
            handle=handle,
            has=has,
            uniq=uniq,
        )

    # -- purchases: heterogeneous buy-till-you-die ----------------------------------------------
    def behaviour(self, P: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rng, n = self.rng, self.n
        has = P["has"]
        can_buy = has[:, 0] | has[:, 2] | (has[:, 1] & (rng.random(n) < 0.5))
        window = has[:, 0] & (rng.random(n) < 0.08)
        buyer = can_buy & ~window
        vip = buyer & (rng.random(n) < 0.04)
        seeker = buyer & ~vip & (rng.random(n) < 0.15)
        lam = rng.gamma(0.9, 4.0, n) * np.where(vip, 3.0, 1.0)  # purchases per year
        p_drop = rng.beta(1.2, 5.0, n) * np.where(vip, 0.4, 1.0)
        spend = rng.gamma(4.0, 0.25, n) * np.where(vip, 2.5, 1.0)  # multiplier on basket size
        acquired = rng.integers(self.t0, self.t1 - 14 * DAY, n)
        open_p = rng.beta(1.5, 4.0, n)
        click_p = rng.beta(1.2, 6.0, n)
        tone = rng.choice([1, -1, 0], size=n, p=[0.12, 0.07, 0.81])
        # taste: each person likes a few leaf categories
        L = len(vocab.CATEGORIES)
        pref = rng.dirichlet(np.full(L, 0.15), n).astype(np.float32)
        life = buyer & (rng.random(n) < 0.08) & (acquired < self.t1 - 240 * DAY)
        life_kind = rng.integers(0, len(vocab.LIFE_EVENTS), n)
        life_ts = np.where(
            life,
            acquired
            + 60 * DAY
            + (rng.random(n) * np.maximum(self.t1 - 60 * DAY - (acquired + 60 * DAY), 1)).astype(
                np.int64
            ),
            0,
        )
        return dict(
            buyer=buyer,
            window=window,
            vip=vip,
            seeker=seeker,
            lam=lam,
            p_drop=p_drop,
            spend=spend,
            acquired=acquired,
            open_p=open_p,
            click_p=click_p,
            tone=tone,
            pref=pref,
            life=life,
            life_kind=life_kind,
            life_ts=life_ts,
        )

    def purchases(
        self, B: dict[str, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Order (person, time) pairs; per person: churned flag and churn time."""
        rng = self.rng
        buyers = np.flatnonzero(B["buyer"])
        birth = B["acquired"][buyers]
        years = (self.t1 - birth) / (365.25 * DAY)
        n_rep = np.minimum(rng.poisson(B["lam"][buyers] * years), 300)
        geo = rng.geometric(B["p_drop"][buyers])  # transactions until drop-out
        alive_repeats = geo - 1
        owner = np.repeat(np.arange(len(buyers)), n_rep)
        t = birth[owner] + (rng.random(len(owner)) * (self.t1 - birth[owner])).astype(np.int64)
        order = np.lexsort((t, owner))
        owner, t = owner[order], t[order]
        starts = np.cumsum(n_rep) - n_rep
        rank = np.arange(len(owner)) - starts[owner]
        keep = rank < alive_repeats[owner]
        churned = alive_repeats < n_rep
        last_kept = np.where(alive_repeats > 0, starts + alive_repeats - 1, -1)
        at_last = t[np.clip(last_kept, 0, max(len(t) - 1, 0))] if len(t) else birth
        churn_t = np.where(churned, np.where(alive_repeats > 0, at_last, birth), 0)
        persons = np.concatenate([buyers, buyers[owner[keep]]])
        times = np.concatenate([birth, t[keep]])
        o = np.lexsort((times, persons))
        churned_all = np.zeros(self.n, bool)
        churn_all = np.zeros(self.n, np.int64)
        churned_all[buyers] = churned
        churn_all[buyers] = churn_t
        return persons[o], times[o], churned_all, churn_all

    # -- write everything ---------------------------------------------------------------------
    def run(self) -> dict[str, int]:
        """Generate this block of people and append their records to the sink."""
        rng = self.rng
        P = self.people()
        B = self.behaviour(P)
        records: list[pa.Table] = []  # (table, key, person_id) for every record shown
        counts: dict[str, int] = {}

        cat = self.catalog
        leaf_products, prod_id, prod_name, prod_cat, prod_price = (
            cat.leaf_products,
            cat.ids,
            cat.names,
            cat.categories,
            cat.prices,
        )
        data, truth = self.sink.data, self.sink.truth

        # orders and lines
        o_person, o_time, churned, churn_ts = self.purchases(B)
        n_orders = len(o_person)
        has = P["has"]
        web_ok, store_ok = has[o_person, 0], has[o_person, 2]
        chan = np.where(
            web_ok & store_ok,
            np.where(rng.random(n_orders) < 0.6, "web", "store"),
            np.where(web_ok, "web", np.where(store_ok, "store", "phone")),
        ).astype(object)
        n_drawn = 1 + rng.poisson(0.4 + 0.6 * B["vip"][o_person])
        p_order, p_prod = self._bundle_lines(o_person)
        n_lines = n_drawn + np.bincount(p_order, minlength=n_orders)
        l_order = np.repeat(np.arange(n_orders), n_lines)
        l_person = o_person[l_order]
        l_time = o_time[l_order]
        cum = np.cumsum(B["pref"], axis=1)
        after = B["life"][l_person] & (l_time >= B["life_ts"][l_person])
        target = np.array(
            [[c for c, _, _ in vocab.CATEGORIES].index(t) for _, t in vocab.LIFE_EVENTS]
        )
        leaf = _draw(cum, l_person, rng.random(len(l_order)).astype(np.float32))
        switch = after & (rng.random(len(l_order)) < 0.75)
        leaf[switch] = target[B["life_kind"][l_person[switch]]]
        within = np.minimum((20 * rng.random(len(l_order)) ** 2).astype(np.int64), 19)
        by_leaf = np.array([lp for lp in leaf_products])
        prod = by_leaf[leaf, within]
        # products sold only through a bundle are not drawn (at most 3 per leaf, places 17-19)
        alone = cat.planted_only[prod]
        prod[alone] = by_leaf[leaf[alone], within[alone] % 17]
        if len(p_order):
            # the planted lines come after an order's drawn ones
            first = (np.cumsum(n_lines) - n_lines)[p_order] + n_drawn[p_order]
            nth = pd.Series(p_order).groupby(p_order).cumcount().to_numpy()
            prod[first + nth] = p_prod
        qty = 1 + rng.poisson(0.25 * B["spend"][l_person])
        unit = prod_price[prod]
        promo = self._promo(o_time)
        disc_order = np.where(
            B["seeker"][o_person],
            rng.random(n_orders) < 0.8,
            (rng.random(n_orders) < 0.08) | (promo & (rng.random(n_orders) < 0.5)),
        )
        rate = rng.choice([0.1, 0.15, 0.2, 0.3], size=n_orders)
        coupon = np.where(
            disc_order, np.char.add("SAVE", (rate * 100).astype(int).astype(str)), None
        )
        line_disc = np.where(disc_order[l_order], np.round(qty * unit * rate[l_order], 2), 0.0)
        returned = np.where(rng.random(len(l_order)) < 0.06, qty, 0)
        line_no = np.arange(len(l_order)) - (np.cumsum(n_lines) - n_lines)[l_order] + 1
        ret_lines = np.bincount(l_order, weights=(returned > 0), minlength=n_orders)
        status = np.where(
            ret_lines == 0,
            "completed",
            np.where(ret_lines == n_lines, "returned", "partially_returned"),
        ).astype(object)
        total = np.round(
            np.bincount(l_order, weights=qty * unit - line_disc, minlength=n_orders), 2
        )
        order_id = _ids("O", self.offsets["orders"] + np.arange(1, n_orders + 1), 9)
        self.offsets["orders"] += n_orders
        is_web, is_store, is_phone = chan == "web", chan == "store", chan == "phone"
        email_var = self._email_variant(P["email"][o_person], 0.1)
        phone_var = self._phone_variant(P["phone"][o_person])
        ts_text = self._local_time(o_time, is_store)
        cols = {
            "OrderNumber": order_id[l_order],
            "Order Date": ts_text[l_order],
            "Customer ID": np.where(is_phone, P["crm_id"][o_person], None)[l_order],
            "User ID": np.where(is_web, P["user_id"][o_person], None)[l_order],
            "Email": np.where(is_web, email_var, None)[l_order],
            "Phone": np.where(is_store & (rng.random(n_orders) < 0.3), phone_var, None)[l_order],
            "Loyalty Card": np.where(is_store, P["loyalty_id"][o_person], None)[l_order],
            "Channel": chan[l_order],
            "Status": status[l_order],
            "Coupon": coupon[l_order],
            "Total": total[l_order],
            "Line": line_no,
            "SKU": prod_id[prod],
            "Category": prod_cat[prod],
            "Qty": qty.astype(str).astype(object),
            "Unit Price": unit,
            "Line Discount": line_disc,
            "Returned Qty": returned,
        }
        bad_orders = np.flatnonzero(rng.random(n_orders) < self.cfg.bad_row_rate)
        first_line = (np.cumsum(n_lines) - n_lines)[bad_orders]
        kinds = rng.integers(0, 3, len(bad_orders))
        cols["Qty"][first_line[kinds == 0]] = "-1"
        cols["Qty"][first_line[kinds == 1]] = "two"
        dates = cols["Order Date"].astype(object)
        dates[first_line[kinds == 2]] = "31/02/2024"
        cols["Order Date"] = dates
        orders_tbl = pa.table(
            {k: pa.array(list(v) if v.dtype == object else v) for k, v in cols.items()}
        )
        self.sink.csv("orders.csv", orders_tbl)
        bad_order_mask = np.zeros(n_orders, bool)
        bad_order_mask[bad_orders] = True
        counts["orders"] = int(n_orders - len(bad_orders))
        counts["order_lines"] = int(len(l_order) - n_lines[bad_orders].sum())
        counts["quarantine_orders"] = int(n_lines[bad_orders].sum())
        ids = (
            _tok("u", P["user_id"][o_person], is_web),
            _tok("e", P["email"][o_person], is_web),
            _tok("c", P["crm_id"][o_person], is_phone),
            _tok("l", P["loyalty_id"][o_person], is_store),
            _tok("p", P["phone"][o_person], _shown(cols["Phone"][np.cumsum(n_lines) - n_lines])),
        )
        records.append(self._rec("orders", order_id, o_person, bad_order_mask, ids=ids))

        # customers from three sources
        counts.update(self._customers(P, B, data, records, o_person, churned))

        # events and interactions
        counts.update(self._events(P, B, data, records, o_person, o_time, chan, churn_ts, churned))
        counts.update(
            self._interactions(P, B, data, records, o_person, o_time, prod_name, l_order, prod)
        )

        # ground truth
        self._truth(P, B, truth, records, o_person, total, churned, churn_ts, target, cum)
        counts["people"] = self.n
        return counts

    def _bundle_lines(self, o_person: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(order, product) of every planted bundle line, sorted by order (``vocab.BUNDLES``;
        orders are sorted by person, then time). Drawn from a stream of its own."""
        rng = np.random.default_rng([self.cfg.seed, self.block, 4242])
        n_orders = len(o_person)
        orders: list[np.ndarray] = []
        prods: list[np.ndarray] = []
        new_person = np.r_[True, o_person[1:] != o_person[:-1]] if n_orders else np.zeros(0, bool)
        starts = np.flatnonzero(new_person)
        counts = np.diff(np.r_[starts, n_orders])
        for kind, ante, cons, conf, rate in self.catalog.bundles:
            if kind == "basket":
                at = np.flatnonzero(rng.random(n_orders) < rate)
                hit = at[rng.random(len(at)) < conf]
            else:
                who = np.flatnonzero((counts >= 2) & (rng.random(len(starts)) < rate))
                at = starts[who]
                got = rng.random(len(who)) < conf
                later = 1 + (rng.random(len(who)) * (counts[who] - 1)).astype(np.int64)
                hit = (starts[who] + later)[got]
            for a in ante:
                orders.append(at)
                prods.append(np.full(len(at), a))
            orders.append(hit)
            prods.append(np.full(len(hit), cons))
        o = np.concatenate(orders) if orders else np.zeros(0, np.int64)
        p = np.concatenate(prods) if prods else np.zeros(0, np.int64)
        k = np.argsort(o, kind="stable")
        return o[k].astype(np.int64), p[k].astype(np.int64)

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

    def _customers(
        self,
        P: dict[str, np.ndarray],
        B: dict[str, np.ndarray],
        data: Path,
        records: list[pa.Table],
        o_person: np.ndarray,
        churned: np.ndarray,
    ) -> dict[str, int]:
        rng, n = self.rng, self.n
        has = P["has"]
        counts: dict[str, int] = {}
        bought = np.bincount(o_person, minlength=n) > 0
        created = B["acquired"] - rng.integers(0, 30 * DAY, n)
        # web shop accounts
        s = np.flatnonzero(has[:, 0])
        shop = pa.table(
            {
                "customer_id": P["user_id"][s],
                "user_id": P["user_id"][s],
                "email": P["email"][s],
                "first_name": P["first"][s],
                "last_name": P["last"][s],
                "phone": np.where(rng.random(len(s)) < 0.5, P["phone"][s], None),
                "address": P["address"][s],
                "city": P["city"][s],
                "zip": P["postcode"][s],
                "instagram": np.where(has[s, 3] & (rng.random(len(s)) < 0.3), P["handle"][s], None),
                "accepts_marketing": np.where(rng.random(len(s)) < 0.7, "yes", "no"),
                "created_at": _iso(created[s]),
            }
        )
        self.sink.csv("customers_shop.csv", shop)
        name = self._names(P, s)
        ids: tuple[np.ndarray, ...] = (
            _tok("u", P["user_id"][s]),
            _tok("e", P["email"][s]),
            _tok("p", P["phone"][s], shop["phone"].is_valid().to_numpy(zero_copy_only=False)),
            _tok("h", P["handle"][s], shop["instagram"].is_valid().to_numpy(zero_copy_only=False)),
            _tok("np", name + P["postcode"][s]),
            _tok("na", name + P["address"][s]),
            _tok("nc", name + P["city"][s]),
        )
        records.append(self._rec("customers", P["user_id"][s], s, source="customers_shop", ids=ids))
        counts["customers_shop"] = len(s)
        # CRM contacts: typos, variants, stages
        c = np.flatnonzero(has[:, 1])
        stage = np.where(
            bought[c], "customer", np.where(rng.random(len(c)) < 0.35, "opportunity", "lead")
        )
        abbreviate = rng.random(len(c)) < 0.5  # "Street" -> "St." in some CRM records
        addr = np.array(
            [
                _abbreviate(a) if ab else a
                for a, ab in zip(P["address"][c], abbreviate, strict=True)
            ],
            dtype=object,
        )
        dob = np.where(rng.random(len(c)) < 0.6, np.datetime_as_string(P["birth"][c]), None).astype(
            object
        )
        crm_id = P["crm_id"][c].copy()
        bad = rng.random(len(c)) < self.cfg.bad_row_rate * 2
        kinds = rng.integers(0, 2, len(c))
        crm_id[bad & (kinds == 0)] = None
        # an unreadable birth date is an optional field's problem: the record loads without it
        # (and the quarantine records the field); a record without an id is rejected
        dob_bad = bad & (kinds == 1)
        dob[dob_bad] = "1975-13-45"
        rejected = bad & (kinds == 0)
        crm = pa.table(
            {
                "Contact ID": crm_id,
                "First Name": _typo(rng, P["first"][c], 0.06),
                "Last Name": _typo(rng, P["last"][c], 0.06),
                "Email": np.where(
                    rng.random(len(c)) < 0.85, self._email_variant(P["email"][c], 0.25), None
                ),
                "Mobile": np.where(
                    rng.random(len(c)) < 0.7, self._phone_variant(P["phone"][c]), None
                ),
                "Street": addr,
                "City": P["city"][c],
                "Zip": P["postcode"][c],
                "Date of Birth": dob,
                "Company": np.where(
                    rng.random(len(c)) < 0.25, np.char.add(P["last"][c].astype(str), " & Co"), None
                ),
                "Lifecycle Stage": stage,
                "Email Opt-in": np.where(rng.random(len(c)) < 0.65, "true", "false"),
                "SMS Opt-in": np.where(rng.random(len(c)) < 0.3, "true", "false"),
                "Twitter": np.where(has[c, 3] & (rng.random(len(c)) < 0.4), P["handle"][c], None),
                "Created": _iso(created[c] - 20 * DAY),
            }
        )
        self.sink.csv("customers_crm.csv", crm)
        name = self._names(P, c)
        valid = {k: crm[k].is_valid().to_numpy(zero_copy_only=False) for k in crm.column_names}
        ids = (
            _tok("c", P["crm_id"][c]),
            _tok("e", P["email"][c], valid["Email"]),
            _tok("p", P["phone"][c], valid["Mobile"]),
            _tok("h", P["handle"][c], valid["Twitter"]),
            _tok("np", name + P["postcode"][c]),
            _tok("na", name + P["address"][c]),
            _tok("nc", name + P["city"][c]),
            _tok(
                "nd",
                name + np.datetime_as_string(P["birth"][c]).astype(object),
                valid["Date of Birth"] & ~dob_bad,
            ),
        )
        records.append(
            self._rec("customers", P["crm_id"][c], c, rejected, source="customers_crm", ids=ids)
        )
        counts["customers_crm"] = int(len(c) - rejected.sum())
        counts["quarantine_customers"] = int(bad.sum())
        # loyalty cards signed up in store: full name in one field, phone, postcode, birth date
        lo = np.flatnonzero(has[:, 2])
        style = rng.random(len(lo)) < 0.5
        full = np.where(
            style,
            np.char.add(np.char.add(P["first"][lo].astype(str), " "), P["last"][lo].astype(str)),
            np.char.add(
                np.char.add(np.char.upper(P["last"][lo].astype(str)), ", "),
                P["first"][lo].astype(str),
            ),
        )
        loyalty = pa.table(
            {
                "card_number": P["loyalty_id"][lo],
                "name": _typo(rng, full.astype(object), 0.04),
                "phone": np.where(
                    rng.random(len(lo)) < 0.7, self._phone_variant(P["phone"][lo]), None
                ),
                "postcode": P["postcode"][lo],
                "dob": np.where(
                    rng.random(len(lo)) < 0.6, np.datetime_as_string(P["birth"][lo]), None
                ),
                "sms_optin": np.where(rng.random(len(lo)) < 0.4, "Y", "N"),
                "since": _iso(created[lo]),
            }
        )
        self.sink.csv("customers_loyalty.csv", loyalty)
        name = self._names(P, lo)
        valid = {k: loyalty[k].is_valid().to_numpy(zero_copy_only=False) for k in ("phone", "dob")}
        ids = (
            _tok("l", P["loyalty_id"][lo]),
            _tok("p", P["phone"][lo], valid["phone"]),
            _tok("np", name + P["postcode"][lo]),
            _tok("nd", name + np.datetime_as_string(P["birth"][lo]).astype(object), valid["dob"]),
        )
        records.append(
            self._rec("customers", P["loyalty_id"][lo], lo, source="customers_loyalty", ids=ids)
        )
        counts["customers_loyalty"] = len(lo)
        return counts

    def _events(
        self,
        P: dict[str, np.ndarray],
        B: dict[str, np.ndarray],
        data: Path,
        records: list[pa.Table],
        o_person: np.ndarray,
        o_time: np.ndarray,
        chan: np.ndarray,
        churn_ts: np.ndarray,
        churned: np.ndarray,
    ) -> dict[str, int]:
        rng, n = self.rng, self.n
        has = P["has"]
        shop = has[:, 0]
        # devices: 1-3 cookies per shop person; a few kiosk devices shared by many people
        n_dev = np.where(shop, 1 + rng.poisson(0.5, n), 0)
        dev_owner = np.repeat(np.arange(n), n_dev)
        dev_id = _hex_ids(rng, len(dev_owner), 8)
        dev_start = np.cumsum(n_dev) - n_dev
        kiosks = np.array(
            [f"kiosk-{self.block:03d}-{i:02d}" for i in range(max(3, n // 20_000))], dtype=object
        )
        kiosk_user = shop & (rng.random(n) < 0.003)
        kiosk_of = rng.integers(0, len(kiosks), n)
        # sessions: before each web order, plus browsing proportional to activity
        web_orders = np.flatnonzero(chan == "web")
        n_orders = np.bincount(o_person, minlength=n)
        base = np.where(B["window"], 12.0, np.where(B["buyer"], 1.0 + 1.0 * n_orders, 1.5))
        n_browse = np.where(shop, rng.poisson(base), 0)
        b_person = np.repeat(np.arange(n), n_browse)
        end = np.where(churned, np.minimum(churn_ts + 45 * DAY, self.t1), self.t1)
        lo = np.maximum(B["acquired"] - 30 * DAY, self.t0)
        b_time = lo[b_person] + (
            rng.random(len(b_person)) * np.maximum(end - lo, DAY)[b_person]
        ).astype(np.int64)
        s_person = np.concatenate([o_person[web_orders], b_person])
        s_time = np.concatenate(
            [o_time[web_orders] - rng.integers(60, 1800, len(web_orders)), b_time]
        )
        s_buy = np.concatenate([np.ones(len(web_orders), bool), np.zeros(len(b_person), bool)])
        ns = len(s_person)
        dev_pick = dev_start[s_person] + (rng.random(ns) * n_dev[s_person]).astype(np.int64)
        s_dev = (
            dev_id[np.clip(dev_pick, 0, max(len(dev_id) - 1, 0))]
            if len(dev_id)
            else np.array([], object)
        )
        on_kiosk = kiosk_user[s_person] & (rng.random(ns) < 0.4)
        s_dev = np.where(on_kiosk, kiosks[kiosk_of[s_person]], s_dev)
        login = s_buy | (rng.random(ns) < 0.35) | on_kiosk
        # pages per session
        n_pages = 1 + rng.poisson(np.where(B["window"][s_person], 4.0, 2.0))
        e_sess = np.repeat(np.arange(ns), n_pages)
        e_person = s_person[e_sess]
        e_time = (
            s_time[e_sess] + (np.arange(len(e_sess)) - (np.cumsum(n_pages) - n_pages)[e_sess]) * 40
        )
        pricing_fan = B["window"] | (rng.random(n) < 0.1)
        r = rng.random(len(e_sess))
        is_pricing = r < np.where(pricing_fan[e_person], 0.25, 0.02)
        kind = np.where(
            is_pricing,
            "Pricing",
            np.where(
                r < 0.35,
                "Home",
                np.where(r < 0.5, "Search", np.where(r < 0.65, "Category", "Product")),
            ),
        ).astype(object)
        cat_idx = _draw(
            np.cumsum(B["pref"], axis=1), e_person, rng.random(len(e_sess)).astype(np.float32)
        )
        leaf = np.array([c for c, _, _ in vocab.CATEGORIES], dtype=object)[cat_idx]
        prod = _ids("P", cat_idx * 20 + rng.integers(0, 20, len(e_sess)), 5)
        terms = np.array([c.split(" > ")[1].lower() for c, _, _ in vocab.CATEGORIES], dtype=object)[
            cat_idx
        ]
        web = {
            "type": np.where(kind == "Search", "track", "page").astype(object),
            "event": np.where(kind == "Search", "Products Searched", None),
            "name": np.where(kind == "Search", None, kind),
            "user_id": np.where(login[e_sess], P["user_id"][e_person], None),
            "anonymous_id": s_dev[e_sess],
            "ts": e_time,
            "path": np.where(
                kind == "Pricing",
                "/pricing",
                np.where(
                    kind == "Home",
                    "/",
                    np.where(
                        kind == "Product",
                        np.char.add("/p/", prod.astype(str)),
                        np.where(
                            kind == "Category", np.char.add("/c/", terms.astype(str)), "/search"
                        ),
                    ),
                ),
            ).astype(object),
            "category": np.where((kind == "Category") | (kind == "Product"), leaf, None),
            "product_id": np.where(kind == "Product", prod, None),
            "query": np.where(kind == "Search", terms, None),
            "email": np.full(len(e_sess), None, dtype=object),
            "campaign": np.full(len(e_sess), None, dtype=object),
        }
        # one identify per logged-in session, just before its first page
        first_in_sess = (np.cumsum(n_pages) - n_pages)[np.flatnonzero(login)]
        idp = e_person[first_in_sess]
        ident = {
            "type": np.full(len(idp), "identify", dtype=object),
            "event": np.full(len(idp), None, object),
            "name": np.full(len(idp), None, object),
            "user_id": P["user_id"][idp],
            "anonymous_id": web["anonymous_id"][first_in_sess],
            "ts": e_time[first_in_sess] - 1,
            "path": np.full(len(idp), None, object),
            "category": np.full(len(idp), None, object),
            "product_id": np.full(len(idp), None, object),
            "query": np.full(len(idp), None, object),
            "email": P["email"][idp],
            "campaign": np.full(len(idp), None, object),
        }
        # e-mail campaigns every two weeks to a quarter of consenting subscribers
        subs = np.flatnonzero((has[:, 0] | has[:, 1]) & (rng.random(n) < 0.7))
        camp_t = np.arange(self.t0 + 7 * DAY, self.t1, 14 * DAY)
        sends_per = rng.binomial(len(camp_t), 0.12, len(subs))
        m_person = np.repeat(subs, sends_per)
        m_camp = rng.integers(0, len(camp_t), len(m_person))
        m_time = camp_t[m_camp] + rng.integers(0, 6 * 3600, len(m_person))
        alive = m_time >= B["acquired"][m_person] - 60 * DAY
        m_person, m_camp, m_time = m_person[alive], m_camp[alive], m_time[alive]
        opened = rng.random(len(m_person)) < B["open_p"][m_person]
        clicked = opened & (rng.random(len(m_person)) < B["click_p"][m_person] * 2)
        mail_parts = []
        for name, mask, delay in [
            ("Email Delivered", np.ones(len(m_person), bool), 0),
            ("Email Opened", opened, 3600),
            ("Email Link Clicked", clicked, 3700),
        ]:
            mp = m_person[mask]
            mail_parts.append(
                {
                    "type": np.full(len(mp), "track", object),
                    "event": np.full(len(mp), name, object),
                    "name": np.full(len(mp), None, object),
                    "user_id": np.where(has[mp, 0], P["user_id"][mp], None),
                    "anonymous_id": np.where(
                        has[mp, 0],
                        None,
                        np.char.add("esp-", P["uniq"][mp].astype(str)).astype(object),
                    ),
                    "ts": m_time[mask] + delay,
                    "path": np.full(len(mp), None, object),
                    "category": np.full(len(mp), None, object),
                    "product_id": np.full(len(mp), None, object),
                    "query": np.full(len(mp), None, object),
                    "email": P["email"][mp],
                    "campaign": np.char.add("cmp-", m_camp[mask].astype(str)).astype(object),
                }
            )
        parts = [web, ident, *mail_parts]
        persons = np.concatenate(
            [e_person, idp] + [m_person[m] for m in (np.ones(len(m_person), bool), opened, clicked)]
        )
        ev = {k: np.concatenate([p[k] for p in parts]) for k in web}
        total = len(persons)
        order = np.argsort(ev["ts"], kind="stable")
        ev = {k: v[order] for k, v in ev.items()}
        persons = persons[order]
        ev["message_id"] = _hex_ids(rng, total, 16)
        bad = rng.random(total) < self.cfg.bad_row_rate
        dup = (rng.random(total) < self.cfg.duplicate_rate) & ~bad
        ts_text = _iso(ev["ts"]).astype(object)
        bad_ts = bad & (rng.random(total) < 0.5)
        ts_text[bad_ts] = "not-a-date"
        tbl = pa.table(
            {
                "messageId": ev["message_id"],
                "type": ev["type"],
                "event": ev["event"],
                "name": ev["name"],
                "userId": ev["user_id"],
                "anonymousId": ev["anonymous_id"],
                "timestamp": ts_text,
                "path": ev["path"],
                "category": ev["category"],
                "product_id": ev["product_id"],
                "query": ev["query"],
                "email": ev["email"],
                "campaign": ev["campaign"],
                "broken": bad & ~bad_ts,
                "dup": dup,
            }
        )
        part = data / f"events.part{self.block}.jsonl"
        self._write_segment_jsonl(tbl, part)
        self.sink.append_file("events.jsonl", part)
        ids = (_tok("u", ev["user_id"]), _tok("d", ev["anonymous_id"]), _tok("e", ev["email"]))
        records.append(self._rec("events", ev["message_id"], persons, bad, ids=ids))
        shared = np.isin(ev["anonymous_id"], kiosks)
        self.sink.parquet(
            "shared_devices", pa.table({"anonymous_id": pa.array(kiosks, pa.string())})
        )
        return {
            "events": int(total - bad.sum()),
            "quarantine_events": int(bad.sum()),
            "events_duplicated_in_file": int(dup.sum()),
            "events_on_shared_devices": int(shared.sum()),
        }

    def _write_segment_jsonl(self, tbl: pa.Table, path: Path) -> None:
        """Segment-spec messages, one per line; broken rows are truncated JSON; dups repeat."""
        con = duckdb.connect(
            config={"autoinstall_known_extensions": False, "autoload_known_extensions": False}
        )
        con.execute("SET enable_progress_bar = false")
        con.register("ev", tbl)
        con.execute(f"""
        COPY (
          WITH msgs AS (
            SELECT rowid_ AS r, dup, broken, json_object(
              'messageId', messageId, 'type', type, 'event', event, 'name', name,
              'userId', userId, 'anonymousId', anonymousId, 'timestamp', timestamp,
              'properties', CASE
                 WHEN type = 'page'
                   THEN json_object('path', path, 'category', category, 'product_id', product_id)
                 WHEN event = 'Products Searched' THEN json_object('query', query)
                 WHEN campaign IS NOT NULL THEN json_object('campaign_id', campaign, 'email', email)
                 ELSE NULL END,
              'traits', CASE WHEN type = 'identify' THEN json_object('email', email) ELSE NULL END,
              'context', CASE WHEN campaign IS NOT NULL
                 THEN json_object('traits', json_object('email', email),
                                  'library', json_object('name', 'esp-export'))
                 ELSE json_object('library', json_object('name', 'analytics.js')) END
            )::VARCHAR AS j0
            FROM (SELECT *, row_number() OVER () AS rowid_ FROM ev)
          )
          , clean AS (  -- Segment clients omit null fields; context is last and never null
            SELECT r, dup, broken, regexp_replace(regexp_replace(j0, '"[a-zA-Z_]+":null,', '', 'g'),
                                                   ',"[a-zA-Z_]+":null', '', 'g') AS j FROM msgs
          )
          SELECT CASE WHEN broken THEN left(j, length(j) // 2) ELSE j END AS line FROM (
            SELECT r, 0 AS k, j, broken FROM clean
            UNION ALL SELECT r, 1 AS k, j, false FROM clean WHERE dup
          ) ORDER BY r, k
        ) TO '{path}' (FORMAT csv, HEADER false, QUOTE '', ESCAPE '', DELIMITER '\x01')
        """)
        con.close()

    def _interactions(
        self,
        P: dict[str, np.ndarray],
        B: dict[str, np.ndarray],
        data: Path,
        records: list[pa.Table],
        o_person: np.ndarray,
        o_time: np.ndarray,
        prod_name: np.ndarray,
        l_order: np.ndarray,
        l_prod: np.ndarray,
    ) -> dict[str, int]:
        rng = self.rng
        has = P["has"]
        first_prod = np.zeros(len(o_person), np.int64)
        first_prod[l_order[::-1]] = l_prod[::-1]
        soc = np.flatnonzero(has[:, 3])
        follows = soc[rng.random(len(soc)) < 0.6]
        n_posts = rng.poisson(np.where(B["tone"][soc] != 0, 2.5, 0.8))
        p_person = np.repeat(soc, n_posts)
        p_time = np.maximum(B["acquired"][p_person], self.t0) + (
            rng.random(len(p_person)) * (self.t1 - np.maximum(B["acquired"][p_person], self.t0))
        ).astype(np.int64)
        reviews = np.flatnonzero(rng.random(len(o_person)) < 0.08)
        tickets = np.flatnonzero(rng.random(len(o_person)) < 0.03)
        parts: list[dict[str, np.ndarray]] = []

        def texts(person: np.ndarray, product: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            tone = B["tone"][person].copy()
            flip = rng.random(len(person)) < 0.3
            tone[flip & (tone == 0)] = rng.choice([1, -1], size=int((flip & (tone == 0)).sum()))
            out = np.empty(len(person), dtype=object)
            for t, bank in ((1, vocab.POSITIVE), (-1, vocab.NEGATIVE), (0, vocab.NEUTRAL)):
                idx = np.flatnonzero(tone == t)
                tmpl = np.array(bank, dtype=object)[rng.integers(0, len(bank), len(idx))]
                out[idx] = [s.format(p=p) for s, p in zip(tmpl, product[idx], strict=True)]
            return out, tone

        k = len(follows)
        parts.append(
            {
                "kind": np.full(k, "follow", object),
                "channel": _pick(rng, ("instagram", "x"), k),
                "handle": P["handle"][follows],
                "email": np.full(k, None, object),
                "user": np.full(k, None, object),
                "text": np.full(k, None, object),
                "rating": np.full(k, None, object),
                "product": np.full(k, None, object),
                "ts": np.maximum(B["acquired"][follows], self.t0) + rng.integers(0, 90 * DAY, k),
                "person": follows,
                "tone": np.zeros(k, np.int64),
            }
        )
        ppro = rng.integers(0, len(prod_name), len(p_person))
        txt, tone = texts(p_person, prod_name[ppro])
        k = len(p_person)
        parts.append(
            {
                "kind": np.full(k, "post", object),
                "channel": _pick(rng, ("instagram", "x", "facebook"), k),
                "handle": P["handle"][p_person],
                "email": np.full(k, None, object),
                "user": np.full(k, None, object),
                "text": txt,
                "rating": np.full(k, None, object),
                "product": np.full(k, None, object),
                "ts": p_time,
                "person": p_person,
                "tone": tone,
            }
        )
        rp = o_person[reviews]
        txt, tone = texts(rp, prod_name[first_prod[reviews]])
        rating = np.clip(
            np.where(tone > 0, 5, np.where(tone < 0, 1, 3)) + rng.integers(-1, 1, len(rp)), 1, 5
        )
        k = len(rp)
        parts.append(
            {
                "kind": np.full(k, "review", object),
                "channel": np.full(k, "site", object),
                "handle": np.full(k, None, object),
                "email": np.where(has[rp, 0], None, P["email"][rp]),
                "user": np.where(has[rp, 0], P["user_id"][rp], None),
                "text": txt,
                "rating": rating.astype(str).astype(object),
                "product": _ids("P", first_prod[reviews], 5),
                "ts": o_time[reviews] + rng.integers(3 * DAY, 20 * DAY, k),
                "person": rp,
                "tone": tone,
            }
        )
        tp = o_person[tickets]
        txt, tone = texts(tp, prod_name[first_prod[tickets]])
        k = len(tp)
        parts.append(
            {
                "kind": np.full(k, "ticket", object),
                "channel": np.full(k, "support", object),
                "handle": np.full(k, None, object),
                "email": P["email"][tp],
                "user": np.full(k, None, object),
                "text": txt,
                "rating": np.full(k, None, object),
                "product": np.full(k, None, object),
                "ts": o_time[tickets] + rng.integers(DAY, 10 * DAY, k),
                "person": tp,
                "tone": tone,
            }
        )
        it = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
        keep = it["ts"] <= self.t1
        it = {key: v[keep] for key, v in it.items()}
        order = np.argsort(it["ts"], kind="stable")
        it = {key: v[order] for key, v in it.items()}
        total = len(order)
        iid = _ids("I", self.offsets["interactions"] + np.arange(1, total + 1), 9)
        self.offsets["interactions"] += total
        rating = it["rating"].copy()
        bad = (rng.random(total) < self.cfg.bad_row_rate * 4) & (it["kind"] == "review")
        rating[bad] = "7"
        tbl = pa.table(
            {
                "id": iid,
                "type": it["kind"],
                "platform": it["channel"],
                "author_handle": it["handle"],
                "author_email": it["email"],
                "author_user_id": it["user"],
                "body": it["text"],
                "stars": rating,
                "product_id": it["product"],
                "created_at": _iso(it["ts"]).astype(object),
            }
        )
        self.sink.csv("interactions.csv", tbl)
        ids = (_tok("h", it["handle"]), _tok("e", it["email"]), _tok("u", it["user"]))
        # a rating out of range is dropped and recorded; the review itself loads
        records.append(self._rec("interactions", iid, it["person"], None, ids=ids))
        self.sink.parquet(
            "interaction_sentiment",
            pa.table(
                {
                    "interaction_id": pa.array(iid, pa.string()),
                    "person_id": pa.array(it["person"] + self.first_person, pa.int64()),
                    "sentiment": pa.array(it["tone"], pa.int64()),
                }
            ),
        )
        return {"interactions": int(total), "quarantine_interactions": int(bad.sum())}

    def _truth(
        self,
        P: dict[str, np.ndarray],
        B: dict[str, np.ndarray],
        truth: Path,
        records: list[pa.Table],
        o_person: np.ndarray,
        total: np.ndarray,
        churned: np.ndarray,
        churn_ts: np.ndarray,
        target: np.ndarray,
        cum: np.ndarray,
    ) -> None:
        n = self.n
        n_orders = np.bincount(o_person, minlength=n)
        revenue = np.bincount(o_person, weights=total, minlength=n)
        cats = np.array([c for c, _, _ in vocab.CATEGORIES], dtype=object)
        top_before = cats[B["pref"].argmax(axis=1)]
        people = pa.table(
            {
                "person_id": np.arange(n) + self.first_person,
                "first_name": P["first"],
                "last_name": P["last"],
                "household": P["household"] + self.first_person,
                "birth_date": P["birth"],
                "has_shop": P["has"][:, 0],
                "has_crm": P["has"][:, 1],
                "has_loyalty": P["has"][:, 2],
                "has_social": P["has"][:, 3],
                "n_identities": P["has"].sum(axis=1),
                "buyer": B["buyer"],
                "window_shopper": B["window"],
                "vip": B["vip"],
                "discount_seeker": B["seeker"],
                "acquired_at": _ts(B["acquired"]),
                "n_orders": n_orders,
                "revenue": np.round(revenue, 2),
                "churned": churned,
                "churned_at": _ts(churn_ts, churned),
                "purchase_rate_per_year": B["lam"],
                "dropout_prob": B["p_drop"],
                "email_open_prob": B["open_p"],
                "sentiment_tone": B["tone"],
                "top_category": top_before,
            }
        )
        self.sink.parquet("people", people)
        life = np.flatnonzero(B["life"])
        events_of = np.array([e for e, _ in vocab.LIFE_EVENTS], dtype=object)
        self.sink.parquet(
            "life_events",
            pa.table(
                {
                    "person_id": pa.array(life + self.first_person, pa.int64()),
                    "life_event": pa.array(events_of[B["life_kind"][life]], pa.string()),
                    "happened_at": _ts(B["life_ts"][life]),
                    "top_category_before": pa.array(top_before[life], pa.string()),
                    "top_category_after": pa.array(cats[target[B["life_kind"][life]]], pa.string()),
                }
            ),
        )
        segs = []
        for name, mask in [
            ("vip", B["vip"]),
            ("discount_seeker", B["seeker"]),
            ("window_shopper", B["window"]),
            ("churned", churned),
            ("social_advocate", (B["tone"] == 1) & P["has"][:, 3]),
            ("detractor", B["tone"] == -1),
            ("email_engaged", B["open_p"] > 0.4),
            ("email_dormant", B["open_p"] < 0.1),
            ("taste_shift", B["life"]),
        ]:
            idx = np.flatnonzero(mask)
            segs.append(
                pa.table(
                    {
                        "person_id": pa.array(idx + self.first_person, pa.int64()),
                        "segment": pa.array([name] * len(idx), pa.string()),
                    }
                )
            )
        self.sink.parquet("segments", pa.concat_tables(segs))
        shown = pa.concat_tables(records)
        rows = np.concatenate([r for r, _ in self._tokens]) if self._tokens else np.zeros(0, int)
        tokens = (
            np.concatenate([t for _, t in self._tokens]) if self._tokens else np.zeros(0, object)
        )
        groups = _link_groups(
            shown["person_id"].to_numpy(),
            shown["rejected"].to_numpy(zero_copy_only=False),
            rows,
            tokens,
        )
        # unique across blocks: a block holds far fewer than 2**32 records
        shown = shown.append_column("link_group", pa.array((self.block << 32) + groups, pa.int64()))
        self.sink.parquet("records", shown)


def generate_sample(
    out: str | Path, customers: int = 10_000, seed: int = 0, **kwargs: Any
) -> dict[str, Any]:
    """Write a generated store to ``out/data`` and its ground truth to ``out/truth``.

    Returns the counts every table should hold once ``out/data`` is ingested.
    """
    cfg = SampleConfig(customers=customers, seed=seed, **kwargs)
    if customers <= 0:
        raise ValueError("customers must be positive")
    catalog = _Catalog.build(np.random.default_rng([seed, 999_999]))
    sink = _Sink(Path(out))
    counts: dict[str, int] = {}
    offsets = {"orders": 0, "interactions": 0}
    try:
        sink.csv("products.csv", catalog.table())
        pacsv.write_csv(catalog.bundles_truth(), sink.truth / "bundles.csv")
        for block, start in enumerate(range(0, customers, cfg.block_size)):
            n = min(cfg.block_size, customers - start)
            part = _Gen(cfg, n=n, block=block, sink=sink, catalog=catalog, offsets=offsets).run()
            for k, v in part.items():
                counts[k] = counts.get(k, 0) + int(v)
    finally:
        sink.close()
    counts["products"] = len(catalog.ids)
    counts["customers"] = sum(
        counts[k] for k in ("customers_shop", "customers_crm", "customers_loyalty")
    )
    counts["quarantine"] = sum(v for k, v in counts.items() if k.startswith("quarantine_"))
    (sink.truth / "counts.json").write_text(json.dumps(counts, indent=2, sort_keys=True))
    return counts


# the loyalty export calls its record id "card_number": segone.toml maps it (see SAMPLE_TOML)
SAMPLE_TOML = """
[ingest.mapping.customers_loyalty]
source_id = "card_number"
loyalty_id = "card_number"
"""

# which kind each generated file is, in load order
SAMPLE_FILES: list[tuple[str, str]] = [
    ("products", "products.csv"),
    ("customers", "customers_shop.csv"),
    ("customers", "customers_crm.csv"),
    ("customers", "customers_loyalty.csv"),
    ("orders", "orders.csv"),
    ("events", "events.jsonl"),
    ("interactions", "interactions.csv"),
]

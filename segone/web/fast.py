"""Fast paths for the dashboard's per-person pages, over its DuckDB copy of the warehouse.

* ``Prepared``: the customer 360 asks the same dozen queries for every person, only the id
  differs. Compiling an Ibis expression costs more than DuckDB takes to answer it, so each
  query is compiled once per copy of the warehouse, its customer id turned into a parameter,
  and later visits run the parameterised SQL (results as Ibis would give them: the same
  columns, maps as dicts).
* ``NameIndex``: customers by name prefix without scanning the profiles: the lower-cased full
  names, last names and customer ids, each sorted once per copy; a prefix is a range found by
  bisection, and the range's best revenues are picked with numpy.
* ``NodeIndex``: ``customer_map`` sorted by identifier, so an identifier typed in the search
  box is found by bisection instead of a scan of every person's identifiers.

Both indexes are built on the first search after a build (about a second at 100k people) and
kept as long as the copy.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

import ibis
import numpy as np
import pandas as pd

# ids that can be swapped for a parameter in compiled SQL without ambiguity
_PLAIN_ID = re.compile(r"^[A-Za-z0-9_.\-]{3,80}$")


class Prepared:
    """A stand-in for the warehouse, handed to a function that queries it for one person
    (``profiles.lookup.profile_of``, ...). Its ``execute`` keeps, per position in the
    function's sequence of queries and the query's columns, the SQL compiled at the first visit
    with the person's id as ``$1``; tables, names and counts come from the warehouse itself."""

    def __init__(self, wh: Any, cache: MutableMapping[Any, Any], key: str, param: str) -> None:
        self.wh = wh
        self.cache = cache
        self.key = key
        self.param = param
        self.i = 0
        self.plain = bool(_PLAIN_ID.match(param))

    def table(self, name: str) -> ibis.Table:
        return self.wh.table(name)

    def tables(self) -> list[str]:
        return list(self.wh.tables())

    def count(self, name: str) -> int:
        return int(self.wh.count(name))

    def execute(self, expr: Any) -> Any:
        self.i += 1
        if not self.plain or not isinstance(expr, ibis.Table):
            return self.wh.execute(expr)
        # the position alone is not enough: a function may skip a query for one person (no
        # products to name) and so shift the later ones; the columns tell the queries apart
        k = (self.key, self.i, tuple(expr.columns))
        got = self.cache.get(k)
        if got is None:
            sql = str(ibis.to_sql(expr, dialect="duckdb"))
            lit = f"'{self.param}'"
            if lit not in sql:  # this query does not name the person: nothing to prepare
                self.cache[k] = False
                return self.wh.execute(expr)
            got = (sql.replace(lit, "$1"), expr.schema())
            self.cache[k] = got
        if got is False:
            return self.wh.execute(expr)
        sql, schema = got
        con = self.wh.backend.con
        table = con.execute(sql, [self.param]).to_arrow_table()
        df = table.to_pandas(maps_as_pydicts="strict", timestamp_as_object=False)
        return _as_ibis_gives(df, schema)


def _as_ibis_gives(df: pd.DataFrame, schema: ibis.Schema) -> pd.DataFrame:
    """What ``wh.execute`` returns for the same rows: Ibis's own conversion to its schema."""
    from ibis.formats.pandas import PandasData

    df.columns = list(schema.names)
    return PandasData.convert_table(df, schema)


def prepared(
    wh: Any, cache: MutableMapping[Any, Any] | None, key: str, param: str
) -> Any:  # Prepared | the warehouse
    return wh if cache is None else Prepared(wh, cache, key, param)


@dataclass
class NameIndex:
    """Sorted keys (full name, last name, customer id) -> row; revenue per row."""

    ids: np.ndarray
    revenue: np.ndarray  # NaN for none: ranked last
    keys: list[tuple[list[str], np.ndarray]]

    @classmethod
    def build(cls, con: Any) -> NameIndex:
        rows = con.execute(
            "SELECT customer_id, "
            "lower(coalesce(first_name, '') || ' ' || coalesce(last_name, '')) AS full_name, "
            "lower(last_name) AS last_name, revenue FROM profiles"
        ).to_arrow_table()
        ids = np.array(rows.column("customer_id").to_pylist(), dtype=object)
        revenue = np.array(
            [np.nan if v is None else float(v) for v in rows.column("revenue").to_pylist()],
            dtype=float,
        )
        keys = []
        for col in ("full_name", "last_name", "customer_id"):
            vals = rows.column(col).to_pylist()
            present = [i for i, v in enumerate(vals) if v is not None]
            order = sorted(present, key=lambda i: vals[i])
            keys.append(([vals[i] for i in order], np.array(order, dtype=np.int64)))
        return cls(ids, revenue, keys)

    def find(self, q: str, limit: int) -> list[str]:
        """Ids whose full name or last name starts with ``q`` (lower-cased), or whose id
        starts with ``q`` as typed: the best revenues first (none last), then by id."""
        hits: list[np.ndarray] = []
        for n, (sorted_keys, rows) in enumerate(self.keys):
            prefix = q if n == 2 else q.lower()
            lo = bisect_left(sorted_keys, prefix)
            hi = bisect_left(sorted_keys, prefix + "\U0010ffff")
            if hi > lo:
                hits.append(rows[lo:hi])
        if not hits:
            return []
        found = np.unique(np.concatenate(hits))
        rev = self.revenue[found]
        # revenue descending, none last, then customer id ascending
        score = np.where(np.isnan(rev), -np.inf, rev)
        if len(found) > limit:
            cut = np.partition(score, len(found) - limit)[len(found) - limit]
            found, score = found[score >= cut], score[score >= cut]
        ids = self.ids[found]
        order = sorted(range(len(found)), key=lambda i: (-score[i], ids[i]))
        return [str(ids[i]) for i in order[:limit]]


@dataclass
class NodeIndex:
    """``customer_map`` as sorted identifier nodes beside their customer ids: the look-up of
    ``data.find_ids`` without scanning the map (which holds several identifiers a person)."""

    nodes: list[str]
    customers: list[str]

    @classmethod
    def build(cls, con: Any) -> NodeIndex:
        t = con.execute(
            "SELECT node, customer_id FROM customer_map ORDER BY node, customer_id"
        ).to_arrow_table()
        return cls(t.column("node").to_pylist(), t.column("customer_id").to_pylist())

    def customers_of(self, nodes: list[str]) -> list[str]:
        found: set[str] = set()
        for n in nodes:
            i = bisect_left(self.nodes, n)
            while i < len(self.nodes) and self.nodes[i] == n:
                found.add(self.customers[i])
                i += 1
        return sorted(found)

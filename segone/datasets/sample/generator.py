"""One block of people: every concern's part, run in the order the seeds expect."""

from __future__ import annotations

import pyarrow as pa

from segone.datasets.sample.crm import _Customers
from segone.datasets.sample.events import _Events
from segone.datasets.sample.interactions import _Interactions
from segone.datasets.sample.orders import _Orders
from segone.datasets.sample.people import _People
from segone.datasets.sample.truth import _Truth


class _Gen(_People, _Orders, _Customers, _Events, _Interactions, _Truth):
    """One block of people, generated concern by concern (the order of ``run`` is the order
    of the random draws: changing it changes every file)."""

    def run(self) -> dict[str, int]:
        """Generate this block of people and append their records to the sink."""
        P = self.people()
        B = self.behaviour(P)
        records: list[pa.Table] = []  # (table, key, person_id) for every record shown
        counts: dict[str, int] = {}
        data, truth = self.sink.data, self.sink.truth

        o = self._orders(P, B, records, counts)
        counts.update(self._customers(P, B, data, records, o.person, o.churned))
        counts.update(
            self._events(P, B, data, records, o.person, o.time, o.channel, o.churn_ts, o.churned)
        )
        counts.update(
            self._interactions(
                P,
                B,
                data,
                records,
                o.person,
                o.time,
                self.catalog.names,
                o.line_order,
                o.line_product,
            )
        )
        self._truth(
            P,
            B,
            truth,
            records,
            o.person,
            o.total,
            o.churned,
            o.churn_ts,
            o.life_target,
            o.pref_cum,
        )
        counts["people"] = self.n
        return counts

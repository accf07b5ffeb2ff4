"""Orders and their lines: the products drawn from each person's taste, planted bundles,
quantities, promotions, coupons and returns."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa

from segone.datasets import vocab
from segone.datasets.sample.common import (
    DAY,
    _draw,
    _ids,
    _shown,
    _tok,
)
from segone.datasets.sample.identities import _Identities


class OrderDraw(NamedTuple):
    """What the other concerns need of this block's orders."""

    person: np.ndarray
    time: np.ndarray
    channel: np.ndarray
    total: np.ndarray
    churned: np.ndarray
    churn_ts: np.ndarray
    line_order: np.ndarray
    line_product: np.ndarray
    life_target: np.ndarray
    pref_cum: np.ndarray


class _Orders(_Identities):
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

    def _orders(
        self,
        P: dict[str, np.ndarray],
        B: dict[str, np.ndarray],
        records: list[pa.Table],
        counts: dict[str, int],
    ) -> OrderDraw:
        """Orders and their lines (``orders.csv``), with a few invalid rows."""
        rng = self.rng
        cat = self.catalog
        leaf_products, prod_id, prod_cat, prod_price = (
            cat.leaf_products,
            cat.ids,
            cat.categories,
            cat.prices,
        )

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
        return OrderDraw(
            o_person, o_time, chan, total, churned, churn_ts, l_order, prod, target, cum
        )

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

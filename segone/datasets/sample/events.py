"""Web and e-mail behaviour as Segment-spec events (``events.jsonl``), with duplicates and
shared devices."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from segone.datasets import vocab
from segone.datasets.sample.common import (
    DAY,
    _draw,
    _hex_ids,
    _ids,
    _iso,
    _tok,
)
from segone.datasets.sample.identities import _Identities


class _Events(_Identities):
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

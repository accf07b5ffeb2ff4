"""Service interactions (``interactions.csv``): contacts with a known sentiment."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from segone.datasets import vocab
from segone.datasets.sample.common import (
    DAY,
    _ids,
    _iso,
    _pick,
    _tok,
)
from segone.datasets.sample.identities import _Identities


class _Interactions(_Identities):
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

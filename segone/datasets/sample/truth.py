"""The ground truth (``truth/``): who each record really is, segments, life events, churn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from segone.datasets import vocab
from segone.datasets.sample.common import (
    _Block,
    _link_groups,
    _ts,
)


class _Truth(_Block):
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

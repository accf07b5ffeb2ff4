"""Churn over a horizon on a time-based holdout: gradient boosting vs P(alive) vs recency.

    python bench/churn_bench.py --customers 20000 --seed 3

Generates a store, ingests it and resolves identity once (as of the end). With T the end of the
generated period and h the horizon (90 days): the churn model is trained on the profiles as of
T - 2h labelled by who ordered in (T - 2h, T - h], and tested on the profiles as of T - h
labelled by who ordered in (T - h, T] - the way `segone build` trains it, one horizon back, and
judged on a horizon it has not seen. Baselines on the same test rows: the BTYD model's
probability of no purchase in the horizon (exp(-expected purchases)), 1 - P(alive), and
recency alone (days since the last order).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import ibis
import numpy as np
from _sample import SAMPLE_END, ingest_sample
from sklearn.metrics import brier_score_loss, roc_auc_score

from segone.datasets import generate_sample
from segone.identity import resolve
from segone.models.churn import PROFILE_COLUMNS, ChurnModel
from segone.models.pipeline import ScoreReport, churn_labels, customer_scores
from segone.models.settings import ModelSettings
from segone.pipeline.build import profiles_expr
from segone.profiles.sentiment import score_interactions
from segone.schema import TS
from segone.store.duckdb import DuckDBWarehouse


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--customers", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--horizon", type=int, default=90)
    a = ap.parse_args()
    ms = ModelSettings(horizon_days=a.horizon)
    with tempfile.TemporaryDirectory() as d:
        out = Path(d)
        generate_sample(out, customers=a.customers, seed=a.seed)
        with DuckDBWarehouse(out / "wh.duckdb") as wh:
            ingest_sample(wh, out)
            T = SAMPLE_END
            resolve(wh, as_of=T)
            score_interactions(wh)
            h = timedelta(days=a.horizon)
            cols = PROFILE_COLUMNS

            def frame(at: datetime) -> tuple:
                sc = customer_scores(wh, at, ms, ScoreReport(), record=False)
                tbl = wh.materialize("_bench_scores", ibis.memtable(sc))
                p = profiles_expr(wh, ibis.literal(at, type=TS), scores=tbl)
                df = wh.execute(p.select(*[c for c in cols if c in p.columns]))
                df = df[df.orders > 0].reset_index(drop=True)
                back = set(wh.execute(churn_labels(wh, at, at + h)).customer_id)
                return df, ~df.customer_id.isin(back).to_numpy()

            t = time.perf_counter()
            train, y_train = frame(T - 2 * h)
            test, y_test = frame(T - h)
            t_frames = time.perf_counter() - t
            t = time.perf_counter()
            model = ChurnModel(random_state=0).fit(train, y_train)
            t_fit = time.perf_counter() - t
            p_gbm = model.predict_proba(test)
    rows = {
        "gradient boosting on profile features + P(alive)": p_gbm,
        "BTYD: P(no purchase) = exp(-expected purchases)": np.exp(
            -test.expected_purchases.fillna(0).to_numpy(float)
        ),
        "BTYD: 1 - P(alive)": 1 - test.p_alive.fillna(1).to_numpy(float),
        "recency alone (days since last order, rank only)": test.recency_days.to_numpy(float),
    }
    print(
        f"{a.customers:,} generated people (seed {a.seed}); horizon {a.horizon} days; "
        f"train {len(train):,} buyers as of T-2h ({y_train.mean():.1%} churned), "
        f"test {len(test):,} buyers as of T-h ({y_test.mean():.1%} churned); "
        f"features {t_frames:.0f}s, fit {t_fit:.1f}s\n"
    )
    print("| churn score on the test horizon | AUC | Brier |\n|---|---:|---:|")
    for name, p in rows.items():
        brier = f"{brier_score_loss(y_test, p):.4f}" if np.all((p >= 0) & (p <= 1)) else "n/a"
        print(f"| {name} | {roc_auc_score(y_test, p):.3f} | {brier} |")
    const = brier_score_loss(y_test, np.full(len(y_test), y_train.mean()))
    print(f"| constant (train churn rate) | 0.500 | {const:.4f} |")


if __name__ == "__main__":
    main()

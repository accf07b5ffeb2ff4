"""Scoring 1M customers with every per-person model: time and peak memory per step.

    python bench/scoring_bench.py --customers 1000000 --seed-people 5000

Builds a generated store of --seed-people people (identity, profiles, models), then makes
--customers customers by copying those people's rows under new ids (orders, lines, profile
features), and times, each in its own child process (peak RSS is per step):

* btyd: the RFM summary in DuckDB + Pareto/NBD and BG/NBD fits + P(alive), expected purchases,
  Gamma-Gamma and 12-month CLV for every buyer;
* churn: gradient-boosting predictions for every buyer (model fitted on the seed people);
* recommend: co-occurrence rules + ALS fitted on all 1M customers' baskets, top 10 for each;
* taste: category affinity of every customer, in DuckDB.

Baseline in the same run: reading the 1M customers' order lines into pandas and a groupby of
spend per customer (what any per-customer computation costs at least).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _measure import run_measured


def prepare(work: Path, people: int, customers: int) -> None:
    from _sample import SAMPLE_END, ingest_sample

    from segone.datasets import generate_sample
    from segone.models.settings import ModelSettings
    from segone.pipeline.build import build
    from segone.store.duckdb import DuckDBWarehouse

    generate_sample(work / "s", customers=people, seed=5)
    with DuckDBWarehouse(work / "seed.duckdb") as wh:
        ingest_sample(wh, work / "s")
        build(wh, as_of=SAMPLE_END, models=ModelSettings(recommendations=0))
    import duckdb

    con = duckdb.connect(str(work / "big.duckdb"))
    con.execute(f"ATTACH '{work / 'seed.duckdb'}' AS seed (READ_ONLY)")
    n_seed = con.execute("select count(*) from seed.profiles").fetchone()[0]
    copies = -(-customers // n_seed)
    con.execute(f"create table copies as select range as k from range({copies})")
    con.execute(
        """create table lines as
        select rc.customer_id || '-' || c.k as customer_id, o.order_id || '-' || c.k as order_id,
               o.ts, o.amount, o.status, l.product_id, l.category, l.quantity,
               l.returned_quantity
        from seed.orders o
        join seed.record_customers rc on rc.record_table = 'orders' and rc.record_key = o.order_id
        join seed.order_lines l using (order_id)
        cross join copies c"""
    )
    con.execute(
        f"""create table profiles as select p.* replace (p.customer_id || '-' || c.k as customer_id)
        from seed.profiles p cross join copies c limit {customers}"""
    )
    con.close()
    (work / "end.txt").write_text(SAMPLE_END.isoformat())


def step(work: Path, name: str) -> dict[str, float]:
    import duckdb
    import ibis
    import numpy as np

    end = datetime.fromisoformat((work / "end.txt").read_text())
    t = time.perf_counter()
    out: dict[str, float] = {}
    if name == "baseline":
        con = duckdb.connect(str(work / "big.duckdb"), read_only=True)
        df = con.execute("select customer_id, amount from lines").df()
        out["rows"] = float(df.groupby("customer_id").amount.sum().size)
    elif name == "btyd":
        from segone.models.btyd import BetaGeo, GammaGamma, ParetoNBD, customer_lifetime_value
        from segone.models.summary import rfm_summary

        con = ibis.duckdb.connect(str(work / "big.duckdb"), read_only=True)
        o = con.table("lines")
        o = o.filter(o.status != "cancelled").select("customer_id", "order_id", "ts", "amount")
        o = o.distinct()
        s = con.execute(rfm_summary(o, calibration_end=end.replace(tzinfo=None), unit_days=1.0))
        out["summary_s"] = time.perf_counter() - t
        x, tx, T, m = (
            s[c].to_numpy(float) for c in ("frequency", "recency", "T", "monetary_value")
        )
        for model in (ParetoNBD(), BetaGeo()):
            model.fit(x, tx, T)
            model.conditional_probability_alive(x, tx, T)
            model.conditional_expected_number_of_purchases_up_to_time(90.0, x, tx, T)
        rep = (x > 0) & (m > 0)
        gg = GammaGamma().fit(x[rep], m[rep])
        clv = customer_lifetime_value(
            model, gg, x, tx, T, np.where(rep, m, 0.0), months=12, unit_days=1.0
        )
        out["rows"] = float(len(clv))
    elif name == "churn":
        from segone.models.churn import PROFILE_COLUMNS, ChurnModel

        con = duckdb.connect(str(work / "big.duckdb"), read_only=True)
        cols = ", ".join(PROFILE_COLUMNS[1:])
        seed = duckdb.connect(str(work / "seed.duckdb"), read_only=True)
        train = seed.execute(
            f"select {cols}, churn_probability from profiles where orders > 0"
        ).df()
        y = (train.churn_probability > 0.5).to_numpy()  # a stand-in label: this step times predict
        model = ChurnModel().fit(train, y)
        t = time.perf_counter()
        big = con.execute(f"select {cols} from profiles where orders > 0").df()
        out["rows"] = float(len(model.predict_proba(big)))
    elif name == "recommend":
        from segone.models.nextproducts import NextProducts
        from segone.store.duckdb import DuckDBWarehouse

        with DuckDBWarehouse(work / "big.duckdb") as wh:
            lines = wh.table("lines").filter(lambda r: r.status != "cancelled")
            lines = lines.select(
                "customer_id", "order_id", "ts", "product_id", "quantity", "returned_quantity"
            )
            model = NextProducts(random_state=0).fit(wh, lines, as_of=end)
            out["fit_s"] = time.perf_counter() - t
            out["rows"] = float(model.recommend(n=10).num_rows)
    elif name == "taste":
        con = ibis.duckdb.connect(str(work / "big.duckdb"), read_only=True)
        ln = con.table("lines")
        age = (ibis.literal(end).epoch_seconds() - ln.ts.epoch_seconds()) / 86_400.0
        w = (-0.693147 * age / 90.0).exp()
        cat = ln.category.split(" > ")[0] + " > " + ln.category.split(" > ")[1]
        aff = ln.group_by([ln.customer_id, cat.name("category")]).aggregate(affinity=w.sum())
        out["rows"] = float(con.execute(aff.count()))
    out["seconds"] = time.perf_counter() - t
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--seed-people", type=int, default=5_000)
    ap.add_argument("--step", help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.step:
        print(json.dumps(step(a.work, a.step)))
        return
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        t = time.perf_counter()
        prepare(work, a.seed_people, a.customers)
        print(f"prepared {a.customers:,} customers in {time.perf_counter() - t:.0f}s\n")
        print("| step | rows | seconds | peak RSS MiB | ratio to baseline |")
        print("|---|---:|---:|---:|---:|")
        base = None
        for name in ("baseline", "btyd", "churn", "recommend", "taste"):
            _, rss, text = run_measured(
                [sys.executable, __file__, "--step", name, "--work", str(work)]
            )
            r = json.loads(text.splitlines()[-1])
            base = base or r["seconds"]
            extra = ", ".join(f"{k} {v:.1f}" for k, v in r.items() if k.endswith("_s"))
            label = f"{name} ({extra})" if extra else name
            print(
                f"| {label} | {int(r['rows']):,} | {r['seconds']:.1f} | {rss:,.0f} | "
                f"{r['seconds'] / base:.1f} |"
            )


if __name__ == "__main__":
    main()

"""Buy-till-you-die models: CDNOW fits against the published figures and lifetimes 0.11.3, holdout
accuracy, fit times, and scoring 1M simulated customers, all in one run.

    python bench/btyd_bench.py --repeats 5 --customers 1000000 --seed 7

CDNOW: calibration weeks 1-39 (to 1997-09-30), holdout weeks 40-78 (to 1998-06-30), same-day
purchases merged, time in weeks, summarised by ``segone.models.summary.rfm_summary`` on DuckDB.
The 1M customers are simulated from the CDNOW-fitted BG/NBD and Gamma-Gamma (ages drawn from
the CDNOW ages, recency rounded down to whole days as a warehouse summary would give).
Prints a markdown block for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import tracemalloc
import warnings
from collections.abc import Callable
from datetime import date
from typing import Any

import ibis
import numpy as np
import pandas as pd
import scipy

from segone.datasets.cdnow import load_cdnow
from segone.models.btyd import BetaGeo, GammaGamma, ParetoNBD, customer_lifetime_value
from segone.models.summary import rfm_summary

warnings.simplefilter("ignore")  # lifetimes (unmaintained) trips pandas/autograd deprecations
from lifetimes import BetaGeoFitter, GammaGammaFitter, ParetoNBDFitter  # noqa: E402
from lifetimes.version import __version__ as lifetimes_version  # noqa: E402

PUBLISHED = {
    "BG/NBD": ({"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}, -9582.43),
    "Pareto/NBD": ({"r": 0.553, "alpha": 10.578, "s": 0.606, "beta": 11.669}, -9595.0),
    "Gamma-Gamma": ({"p": 6.25, "q": 3.74, "gamma": 15.44}, None),
}
MiB = 1024 * 1024


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median wall seconds over ``repeats`` runs, and the last result."""
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def peak_mib(fn: Callable[[], Any]) -> float:
    """Peak memory allocated while ``fn`` runs (Python and numpy allocations, via tracemalloc)."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / MiB
    finally:
        tracemalloc.stop()


def lifetimes_params(model: Any, names: list[str]) -> dict[str, float]:
    return {n: float(model.params_[n if n != "gamma" else "v"]) for n in names}


def with_params(ref: Any, params: dict[str, float]) -> Any:
    ref.params_ = pd.Series({("v" if k == "gamma" else k): v for k, v in params.items()})
    ref.predict = getattr(ref, "conditional_expected_number_of_purchases_up_to_time", None)
    return ref


def pareto_cost(
    x: np.ndarray, tx: np.ndarray, T: np.ndarray, bx: np.ndarray, btx: np.ndarray, bT: np.ndarray
) -> tuple[int, float]:
    """Likelihood evaluations lifetimes' Pareto/NBD (Nelder-Mead) needs on CDNOW, and the median
    time of one evaluation on the big set: its fit there would take about their product."""
    original = ParetoNBDFitter._negative_log_likelihood
    calls = [0]

    def counted(*args: Any) -> float:
        calls[0] += 1
        return float(original(*args))

    ParetoNBDFitter._negative_log_likelihood = staticmethod(counted)
    try:
        ParetoNBDFitter().fit(x, tx, T)
    finally:
        ParetoNBDFitter._negative_log_likelihood = staticmethod(original)
    scale = 1 / bT.max()
    args = (np.array([0.5, 10 * scale, 0.6, 11 * scale]), bx, btx * scale, bT * scale)
    per_eval, _ = timed(lambda: original(*args, np.ones_like(bx), 0.0), 3)
    return calls[0], per_eval


def cdnow_summary() -> pd.DataFrame:
    table = ibis.memtable(load_cdnow().rename(columns={"date": "ts"}))
    expr = rfm_summary(table, calibration_end="1997-09-30", observation_end="1998-06-30")
    return ibis.duckdb.connect().execute(expr).set_index("customer_id").sort_index()


def simulate(bg: BetaGeo, gg: GammaGamma, ages: np.ndarray, n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    sim = bg.sample(rng.choice(ages, n), random_state=rng)
    sim["recency"] = np.floor(sim.recency * 7 + 1e-9) / 7
    sim["monetary_value"] = gg.sample(sim.frequency, random_state=rng)
    return sim


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeats", type=int, default=5, help="runs per CDNOW fit (median)")
    ap.add_argument("--score-repeats", type=int, default=3, help="runs per 1M scoring (median)")
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--skip-large-fit", action="store_true", help="do not time fitting on the simulated set"
    )
    a = ap.parse_args()
    load = os.getloadavg()[0]

    s = cdnow_summary()
    x, tx, T = s.frequency.to_numpy(float), s.recency.to_numpy(), s["T"].to_numpy()
    repeat = s[s.frequency > 0]

    # ------------------------------------------------------------------ fits and their times
    fits = {
        "BG/NBD": (
            lambda: BetaGeo().fit(x, tx, T),
            lambda: BetaGeoFitter().fit(x, tx, T),
            ["r", "alpha", "a", "b"],
        ),
        "Pareto/NBD": (
            lambda: ParetoNBD().fit(x, tx, T),
            lambda: ParetoNBDFitter().fit(x, tx, T),
            ["r", "alpha", "s", "beta"],
        ),
        "Gamma-Gamma": (
            lambda: GammaGamma().fit(repeat.frequency, repeat.monetary_value),
            lambda: GammaGammaFitter().fit(repeat.frequency, repeat.monetary_value),
            ["p", "q", "gamma"],
        ),
    }
    ours: dict[str, Any] = {}
    rows, time_rows = [], []
    for name, (fit_ours, fit_ref, names) in fits.items():
        t_ours, model = timed(fit_ours, a.repeats)
        t_ref, ref = timed(fit_ref, a.repeats)
        ours[name] = model
        published, pub_ll = PUBLISHED[name]
        theirs = lifetimes_params(ref, names)
        for k in names:
            rows.append(
                f"| {name} | {k} | {published[k]:g} | {model.params_[k]:.4f} | "
                f"{theirs[k]:.4f} | {model.params_[k] / published[k] - 1:+.2%} |"
            )
        # lifetimes' own objective is on rescaled time, so its log-likelihood is recomputed
        # here in weeks for the parameters it found
        if name == "Gamma-Gamma":
            ll_ref = float(
                GammaGamma.from_dict({**model.to_dict(), "params": theirs})
                .log_likelihood(repeat.frequency, repeat.monetary_value)
                .sum()
            )
        else:
            ll_ref = float(
                type(model)
                .from_dict({**model.to_dict(), "params": theirs})
                .log_likelihood(x, tx, T)
                .sum()
            )
        pub = f"{pub_ll:,.2f}" if pub_ll is not None else "—"
        rows.append(
            f"| {name} | log-likelihood | {pub} | {model.log_likelihood_:,.2f} | {ll_ref:,.2f} | "
            + (f"{model.log_likelihood_ - pub_ll:+.2f} |" if pub_ll is not None else "— |")
        )
        time_rows.append(
            f"| {name} | {len(x) if name != 'Gamma-Gamma' else len(repeat):,} | "
            f"{t_ours * 1000:,.0f} | {t_ref * 1000:,.0f} | {t_ref / t_ours:.1f}x |"
        )
    bg, pnbd, gg = ours["BG/NBD"], ours["Pareto/NBD"], ours["Gamma-Gamma"]

    # ------------------------------------------------------------------ holdout accuracy
    actual = s.frequency_holdout.to_numpy(float)
    hold_rows = []
    top = round(0.1 * len(actual))
    for name, model, ref in (
        ("BG/NBD", bg, with_params(BetaGeoFitter(), bg.params_)),
        ("Pareto/NBD", pnbd, with_params(ParetoNBDFitter(), pnbd.params_)),
    ):
        pred = model.conditional_expected_number_of_purchases_up_to_time(39, x, tx, T)
        same = np.max(np.abs(pred / ref.predict(39, x, tx, T) - 1))
        err = pred - actual
        best = np.argsort(-pred, kind="stable")[:top]
        hold_rows.append(
            f"| {name} | {pred.sum():,.0f} | {actual.sum():,.0f} | "
            f"{pred.sum() / actual.sum() - 1:+.1%} | {np.mean(np.abs(err)):.3f} | "
            f"{np.sqrt(np.mean(err**2)):.3f} | "
            f"{actual[best].sum() / actual.sum():.1%} | {same:.1e} |"
        )
    oracle = np.sort(actual)[::-1][:top].sum() / actual.sum()

    # ------------------------------------------------------------------ 1M customers
    sim = simulate(bg, gg, T, a.customers, a.seed)
    sx, stx, sT = sim.frequency.to_numpy(float), sim.recency.to_numpy(), sim["T"].to_numpy()
    sm = sim.monetary_value.to_numpy()
    fx, frec, fT, fm = sim.frequency, sim.recency, sim["T"], sim.monetary_value
    bg_ref = with_params(BetaGeoFitter(), bg.params_)
    pn_ref = with_params(ParetoNBDFitter(), pnbd.params_)
    gg_ref = with_params(GammaGammaFitter(), gg.params_)
    steps: list[tuple[str, Callable[[], Any], Callable[[], Any]]] = [
        (
            "BG/NBD P(alive)",
            lambda: bg.conditional_probability_alive(sx, stx, sT),
            lambda: bg_ref.conditional_probability_alive(sx, stx, sT),
        ),
        (
            "BG/NBD expected purchases, 39 weeks",
            lambda: bg.conditional_expected_number_of_purchases_up_to_time(39, sx, stx, sT),
            lambda: bg_ref.conditional_expected_number_of_purchases_up_to_time(39, sx, stx, sT),
        ),
        (
            "Pareto/NBD P(alive)",
            lambda: pnbd.conditional_probability_alive(sx, stx, sT),
            lambda: pn_ref.conditional_probability_alive(sx, stx, sT),
        ),
        (
            "Pareto/NBD expected purchases, 39 weeks",
            lambda: pnbd.conditional_expected_number_of_purchases_up_to_time(39, sx, stx, sT),
            lambda: pn_ref.conditional_expected_number_of_purchases_up_to_time(39, sx, stx, sT),
        ),
        (
            "Gamma-Gamma expected spend",
            lambda: gg.conditional_expected_average_profit(sx, sm),
            lambda: gg_ref.conditional_expected_average_profit(fx, fm),
        ),
        (
            "CLV 12 months (BG/NBD + Gamma-Gamma)",
            lambda: customer_lifetime_value(bg, gg, sx, stx, sT, sm, periods_per_month=4.345),
            lambda: gg_ref.customer_lifetime_value(bg_ref, fx, frec, fT, fm, freq="W"),
        ),
    ]
    score_rows = []
    for label, mine, theirs in steps:
        t_mine, r_mine = timed(mine, a.score_repeats)
        t_theirs, r_theirs = timed(theirs, a.score_repeats)
        r_theirs = np.asarray(r_theirs, dtype=float)
        ok = np.isfinite(r_theirs) & (r_theirs != 0)
        diff = np.max(np.abs(r_mine[ok] / r_theirs[ok] - 1))
        nonfinite = int(np.count_nonzero(~np.isfinite(r_theirs)))
        score_rows.append(
            f"| {label} | {t_mine:.2f} | {t_theirs:.2f} | {t_theirs / t_mine:.1f}x | "
            f"{peak_mib(mine):,.0f} | {peak_mib(theirs):,.0f} | {diff:.1e} | {nonfinite} |"
        )

    large_rows = []
    if not a.skip_large_fit:
        srep = sim[sim.frequency > 0]
        large = [
            (
                "BG/NBD",
                lambda: BetaGeo().fit(sx, stx, sT),
                lambda: BetaGeoFitter().fit(sx, stx, sT),
            ),
            ("Pareto/NBD", lambda: ParetoNBD().fit(sx, stx, sT), None),
            (
                "Gamma-Gamma",
                lambda: GammaGamma().fit(srep.frequency, srep.monetary_value),
                lambda: GammaGammaFitter().fit(srep.frequency, srep.monetary_value),
            ),
        ]
        distinct = len(sim.groupby(["frequency", "recency", "T"]))
        for label, mine, theirs in large:
            t_mine, model = timed(mine, 1)
            params = ", ".join(f"{k} {v:.3f}" for k, v in model.params_.items())
            if theirs is None:
                evals, per_eval = pareto_cost(x, tx, T, sx, stx, sT)
                ref_cell = (
                    f"not run: ~{evals * per_eval / 60:.0f} min estimated ({evals} likelihood "
                    f"evaluations on CDNOW x {per_eval:.2f} s each on these rows)"
                )
                ratio = f"~{evals * per_eval / t_mine:.0f}x"
            else:
                t_theirs, _ = timed(theirs, 1)
                ref_cell, ratio = f"{t_theirs:.1f}", f"{t_theirs / t_mine:.0f}x"
            n = len(srep) if label == "Gamma-Gamma" else len(sim)
            large_rows.append(
                f"| {label} | {n:,} | {t_mine:.2f} | {ref_cell} | {ratio} | {params} |"
            )

    # ------------------------------------------------------------------ report
    cmd = "python bench/btyd_bench.py " + " ".join(sys.argv[1:])
    print("```")
    print(cmd)
    print("```\n")
    print(
        f"{date.today().isoformat()}, {os.cpu_count()} cores (load average {load:.1f} at start), "
        f"Python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
        f"lifetimes {lifetimes_version}; medians of {a.repeats} fits / {a.score_repeats} "
        "scorings.\n"
    )
    print("CDNOW, 2,357 customers, weeks 1-39; Gamma-Gamma on the 946 repeat buyers.\n")
    print("| model | parameter | published | segone | lifetimes | segone vs published |")
    print("|---|---|---:|---:|---:|---:|")
    print("\n".join(rows))
    print("\nHoldout, weeks 40-78 (39 weeks): expected repeat purchases per customer vs actual.\n")
    print(
        "| model | predicted | actual | total error | MAE | RMSE | holdout purchases by top 10% "
        "| max rel. diff vs lifetimes |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(hold_rows))
    print(f"\n(The top 10% by actual holdout purchases made {oracle:.1%} of them.)\n")
    print("Fit time on CDNOW (median ms; lifetimes also computes a Hessian for BG/NBD and GG).\n")
    print("| model | rows | segone ms | lifetimes ms | speed-up |\n|---|---:|---:|---:|---:|")
    print("\n".join(time_rows))
    print(
        f"\nScoring {a.customers:,} simulated customers (median s; peak = tracemalloc peak of "
        "Python/numpy allocations during one call, inputs excluded).\n"
    )
    print(
        "| step | segone s | lifetimes s | speed-up | segone peak MiB | lifetimes peak MiB "
        "| max rel. diff | lifetimes non-finite |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(score_rows))
    if large_rows:
        print(
            f"\nFitting on the {a.customers:,} simulated customers ({distinct:,} distinct "
            "histories; one run each).\n"
        )
        print("| model | rows | segone s | lifetimes s | speed-up | segone parameters |")
        print("|---|---:|---:|---:|---:|---|")
        print("\n".join(large_rows))


if __name__ == "__main__":
    main()

"""Open Bandit Dataset benchmark: click models, and mass vs segment vs segment-of-one policies.

    python bench/obd_bench.py [--train-frac 0.7] [--n-bootstrap 10000] [--seed 0] [--crossfit 5]

Data: the Open Bandit Dataset sample shipped with segone (ZOZOTOWN, uniform-random logging
policy, "all" campaign, 10,000 rows, 38 clicks; Saito et al., arXiv:2008.07146). The rows are
sorted by time; the first ``--train-frac`` trains, the rest is the evaluation log.

1. Click models are compared by log-loss on a rolling time split *inside* the training part
   (four consecutive validation blocks, each predicted by a model fitted on everything before
   it): a constant rate, item popularity (shrunk), segment x item rates for each single user
   feature (the best defines the segment), and the personalised candidates (ClickModel over a
   grid of C, and a shrunk hierarchy down to the full user-feature combination). The best
   personalised candidate is the segment-of-one model. All are then refitted on the whole
   training part and scored on the evaluation log (log-loss, AUC with a bootstrap interval).
2. Three deterministic policies fill the three slots of the widget (position 1 = left) with
   their three best items, best first, for each evaluation round:
   (a) mass: item CTRs shrunk toward the global rate, the same slate for everyone;
   (b) segment: (segment, item) CTRs shrunk toward the item's;
   (c) segment of one: the segment-of-one model's P(click) for this person (position given
       as context; it shifts every item alike, so the order is the same in every slot).
   Following obp, each logged row (one item in one slot) is a round with the slot as context:
   the policy's item for that slot is compared with the logged one (propensity 1/80).
   Values are estimated by IPW, SNIPW and DR (reward model = the segment-of-one model) with
   percentile bootstrap intervals, beside the random policy's on-policy CTR on the same rows.
3. ``--crossfit K`` also evaluates all rows: the log is cut into K time blocks and each block
   is scored by the same policies fitted on the other blocks (model choices kept from step 1).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd
import sklearn
from scipy.stats import beta
from sklearn.metrics import log_loss, roc_auc_score

from segone.datasets.obd import load_obd
from segone.models.click import ClickModel, ShrunkCTR
from segone.models.ope import (
    PolicyValue,
    doubly_robust,
    ipw,
    on_policy_value,
    prob_greater,
    ranking_action_dist,
    snipw,
)

ITEM = "item_id"
C_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3)
VALIDATION_BLOCKS = (0.4, 0.55, 0.7, 0.85, 1.0)  # cut points inside the training part


@dataclass
class Candidate:
    name: str
    make: Callable[[], Any]
    kind: str  # "reference" | "segment" | "personal"
    rolling_ll: float = float("nan")
    rolling_delta: float = float("nan")  # minus the constant's log-loss, per row
    rolling_se: float = float("nan")


def validation_blocks(n: int) -> list[tuple[int, int]]:
    """(start, stop) rows of each validation block; a block is predicted from all rows before."""
    return list(pairwise(int(f * n) for f in VALIDATION_BLOCKS))


def rolling_predictions(train: pd.DataFrame, make: Callable[[], Any]) -> np.ndarray:
    out = []
    for start, stop in validation_blocks(len(train)):
        fit = train.iloc[:start]
        out.append(make().fit(fit, fit["click"]).predict_proba(train.iloc[start:stop])[:, 1])
    return np.concatenate(out)


def row_log_loss(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    return -(y * np.log(p) + (1 - y) * np.log1p(-p))


def auc_interval(y: np.ndarray, p: np.ndarray, n_boot: int, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        if 0 < y[idx].sum() < len(idx):
            values.append(roc_auc_score(y[idx], p[idx]))
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def clopper_pearson(clicks: int, rounds: int, alpha: float = 0.05) -> tuple[float, float]:
    """Exact binomial interval of clicks / rounds.

    Under uniform logging a deterministic policy's SNIPW is the click rate of the rounds where
    it matches the logged item (the replay estimate); which rounds match does not depend on the
    clicks, so this interval holds even when the bootstrap collapses on zero clicks.
    """
    low = beta.ppf(alpha / 2, clicks, rounds - clicks + 1) if clicks > 0 else 0.0
    high = beta.ppf(1 - alpha / 2, clicks + 1, rounds - clicks) if clicks < rounds else 1.0
    return float(low), float(high)


def fmt_value(v: PolicyValue) -> str:
    return f"{v.value:.4f} [{v.low:.4f}, {v.high:.4f}]"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument(
        "--train-frac", type=float, default=0.7, help="share of rows (by time) to train"
    )
    ap.add_argument("--n-bootstrap", type=int, default=10_000, help="bootstrap draws per estimate")
    ap.add_argument("--auc-bootstrap", type=int, default=1000, help="bootstrap draws per AUC")
    ap.add_argument("--seed", type=int, default=0, help="seed of every bootstrap")
    ap.add_argument(
        "--crossfit",
        type=int,
        default=0,
        metavar="K",
        help="also evaluate every row with policies fitted on the other K-1 time blocks",
    )
    args = ap.parse_args(argv)
    t_start = time.perf_counter()

    cmd = "python bench/obd_bench.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"command: `{cmd.strip()}`")
    print(
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.machine()}; scikit-learn {sklearn.__version__}, "
        f"numpy {np.__version__}, pandas {pd.__version__}"
    )

    data = load_obd()
    logs = data.impressions.sort_values("timestamp", kind="stable", ignore_index=True)
    logs = logs.merge(data.items, on=ITEM, how="left", validate="many_to_one")
    users = list(data.user_features)
    items = data.items.set_index(ITEM, drop=False).sort_index()
    n_actions, n_positions = data.n_actions, data.len_list
    cut = int(args.train_frac * len(logs))
    train, test = logs.iloc[:cut], logs.iloc[cut:].reset_index(drop=True)
    print(
        f"data: Open Bandit Dataset, random policy, 'all' campaign: {len(logs):,} rows, "
        f"{int(logs.click.sum())} clicks, CTR {logs.click.mean():.4f} (published: 0.0038); "
        f"{n_actions} items, {n_positions} positions, propensity 1/{n_actions}"
    )
    print(
        f"split by time at {test.timestamp.iloc[0]:%Y-%m-%d %H:%M} UTC: train {len(train):,} rows "
        f"/ {int(train.click.sum())} clicks, evaluation {len(test):,} rows / "
        f"{int(test.click.sum())} clicks"
    )
    print()

    # -- 1. click models ----------------------------------------------------------------------
    def logistic(c: float) -> Callable[[], ClickModel]:
        return lambda: ClickModel(
            person_features=users,
            item_features=[ITEM, *data.item_features],
            context_features=["position"],
            numeric_features=["item_feature_0"],
            C=c,
        )

    def shrunk(*levels: list[str]) -> Callable[[], ShrunkCTR]:
        return lambda: ShrunkCTR(levels=[list(level) for level in levels])

    candidates = [
        Candidate("constant (training CTR)", shrunk(), "reference"),
        Candidate("popularity: item CTR shrunk to global", shrunk([ITEM]), "reference"),
    ]
    candidates += [
        Candidate(f"segment {u} x item, shrunk to item", shrunk([ITEM], [u, ITEM]), "segment")
        for u in users
    ]
    y_roll = np.concatenate(
        [train.click.to_numpy(dtype=float)[a:b] for a, b in validation_blocks(len(train))]
    )

    def score(cands: list[Candidate]) -> None:
        for cand in cands:
            loss = row_log_loss(y_roll, rolling_predictions(train, cand.make))
            delta = loss - base_loss
            cand.rolling_ll = float(loss.mean())
            cand.rolling_delta = float(delta.mean())
            cand.rolling_se = float(delta.std(ddof=1) / np.sqrt(len(delta)))

    base_loss = row_log_loss(y_roll, rolling_predictions(train, candidates[0].make))
    score(candidates)
    segment_cand = min((c for c in candidates if c.kind == "segment"), key=lambda c: c.rolling_ll)
    segment_feature = users[candidates.index(segment_cand) - 2]
    personal = [Candidate(f"ClickModel logistic C={c}", logistic(c), "personal") for c in C_GRID]
    personal.append(
        Candidate(
            f"hierarchy item > {segment_feature} x item > all user features x item, shrunk",
            shrunk([ITEM], [segment_feature, ITEM], [*users, ITEM]),
            "personal",
        )
    )
    score(personal)
    candidates += personal
    personal_cand = min(personal, key=lambda c: c.rolling_ll)

    y_test = test.click.to_numpy().astype(float)
    print("### Click models: log-loss out of sample\n")
    print(
        f"Selection: rolling time split inside the training part ({len(y_roll):,} validation "
        f"rows, {int(y_roll.sum())} clicks); Δ = minus the constant model, per row, ± its "
        f"standard error. Then refitted on all training rows and scored on the evaluation log "
        f"({len(test):,} rows, {int(y_test.sum())} clicks; its items were shown uniformly at "
        f"random, so these are unbiased for uniform exposure). AUC interval: "
        f"{args.auc_bootstrap} bootstrap draws.\n"
    )
    print(
        "| model | rolling log-loss | Δ vs constant (×1e-4) | holdout log-loss | holdout Δ vs "
        "constant (×1e-4) | holdout AUC [95% CI] | predicted / actual clicks |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    fitted: dict[str, Any] = {}
    holdout_base = row_log_loss(y_test, np.full(len(y_test), train.click.mean()))
    for cand in candidates:
        model = cand.make().fit(train, train.click)
        fitted[cand.name] = model
        p = model.predict_proba(test)[:, 1]
        delta = row_log_loss(y_test, p) - holdout_base
        if np.ptp(p) > 0:
            auc = roc_auc_score(y_test, p)
            lo, hi = auc_interval(y_test, p, args.auc_bootstrap, args.seed)
        else:
            auc, lo, hi = 0.5, 0.5, 0.5
        mark = {segment_cand.name: " **(segment)**", personal_cand.name: " **(segment of one)**"}
        print(
            f"| {cand.name}{mark.get(cand.name, '')} | {cand.rolling_ll:.5f} "
            f"| {cand.rolling_delta * 1e4:+.2f} ± {cand.rolling_se * 1e4:.2f} "
            f"| {log_loss(y_test, p, labels=[0, 1]):.5f} "
            f"| {delta.mean() * 1e4:+.2f} ± {delta.std(ddof=1) / np.sqrt(len(delta)) * 1e4:.2f} "
            f"| {auc:.3f} [{lo:.3f}, {hi:.3f}] | {p.sum():.1f} / {int(y_test.sum())} |",
            flush=True,
        )
    print()

    # -- 2. policies on the evaluation log ----------------------------------------------------
    chosen = (candidates[1], segment_cand, personal_cand)
    models = tuple(fitted[c.name] for c in chosen)
    scores, q_hat = policy_scores(models, test, items, users, segment_feature)
    print("### Off-policy value of mass, segment and segment-of-one policies\n")
    print(
        f"Evaluation log: the last {len(test):,} rows by time, {int(test.click.sum())} clicks; "
        f"the policies are fitted on the first {len(train):,}."
    )
    dists = {
        "(d) segone /v1/decide (Thompson)": thompson_dist(
            train, test, items, segment_feature, n_positions
        )
    }
    evaluate(test, scores, q_hat, n_actions, n_positions, args, dists)
    top = np.argsort(-scores["(a) mass"][0], kind="stable")[:3]
    print(
        f"Mass slate (items, slot 1 first): {', '.join(str(int(i)) for i in items.index[top])}; "
        f"segment feature: {segment_feature}; segment-of-one and DR reward model: "
        f"{personal_cand.name}."
    )
    print()

    # -- 3. optional: every row evaluated, by policies fitted on the other time blocks ----------
    if args.crossfit:
        blocks = np.array_split(np.arange(len(logs)), args.crossfit)
        parts: list[tuple[dict[str, np.ndarray], np.ndarray]] = []
        for block in blocks:
            rest = logs.drop(index=pd.Index(block))
            fits = tuple(c.make().fit(rest, rest.click) for c in chosen)
            parts.append(policy_scores(fits, logs.iloc[block], items, users, segment_feature))
        cf_scores = {k: np.concatenate([sc[k] for sc, _ in parts]) for k in parts[0][0]}
        cf_q = np.concatenate([q for _, q in parts])
        print(f"### Cross-fitted: all {len(logs):,} rows, {args.crossfit} time blocks\n")
        print(
            f"Each block's rows are evaluated with policies (same definitions and settings as "
            f"above) fitted on the other {args.crossfit - 1} blocks, earlier and later ones: "
            f"{int(logs.click.sum())} clicks instead of {int(test.click.sum())}, at the price of "
            f"policies that have seen the future (optimistic if tastes drift over the week)."
        )
        evaluate(logs, cf_scores, cf_q, n_actions, n_positions, args)
    print(f"Run time {time.perf_counter() - t_start:.0f} s.")
    return 0


def thompson_dist(
    train: pd.DataFrame,
    rounds: pd.DataFrame,
    items: pd.DataFrame,
    segment_feature: str,
    n_positions: int,
) -> np.ndarray:
    """segone's decision policy as the server runs it: Thompson sampling on (clicks,
    impressions) counters of each item, everyone's and the round's segment's (the training
    rows' counts), with the policy's default priors around the training CTR; for each round,
    the exact probability (share of its 64 draws) of each item at each slot, from one seeded
    generator."""
    from segone.decisions.policy import PolicyParams, PriorArrays, key_lists, thompson

    ids = [str(i) for i in items.index]
    ctr = float(train.click.mean())
    prm = PolicyParams(base_rate=ctr)
    stats: dict[str, tuple[float, float]] = {}
    g, _ = key_lists("obd", "all", ids)
    per = train.groupby(ITEM).click.agg(["sum", "size"])
    for i, k in zip(ids, g, strict=True):
        if int(i) in per.index:
            stats[k] = (float(per.loc[int(i), "sum"]), float(per.loc[int(i), "size"]))
    seg = train.groupby([segment_feature, ITEM]).click.agg(["sum", "size"])
    for (grp, item), row in seg.iterrows():
        _, c = key_lists("obd", str(grp), [str(item)])
        stats[c[0]] = (float(row["sum"]), float(row["size"]))
    pri = PriorArrays(np.full(len(ids), ctr), np.ones(len(ids)))
    rng = np.random.default_rng(0)
    dist = np.zeros((len(rounds), len(ids), n_positions))
    for r, grp in enumerate(rounds[segment_feature].astype(str).tolist()):
        ranking = thompson(
            ids, pri, stats, slots=n_positions, rng=rng, placement="obd", group=grp, params=prm
        )
        dist[r, :, :] = ranking.p_position
    return dist


def policy_scores(
    models: tuple[Any, Any, Any],
    rounds: pd.DataFrame,
    items: pd.DataFrame,
    users: list[str],
    segment_feature: str,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Each policy's score of every item in every round, and the DR reward model's P(click)."""
    mass, segment, personal = models
    people = rounds[[*users, "position"]].reset_index(drop=True)
    scores = {
        "(a) mass": np.repeat(mass.predict_matrix(people.iloc[:1], items), len(people), axis=0),
        f"(b) segment ({segment_feature})": segment.predict_matrix(people, items),
        "(c) segment of one": personal.predict_matrix(people, items),
    }
    # the segment-of-one model's P(click) of every item in every slot (position is 1-based)
    q_hat = np.stack(
        [personal.predict_matrix(people.assign(position=k + 1), items) for k in range(3)], axis=2
    )
    return scores, q_hat


def ladder_table(control: tuple[int, int], arms: dict[str, tuple[int, int]]) -> None:
    """The ladder as ``segone campaign report`` measures a campaign: each policy an arm, the
    random (logging) policy the control group. Under uniform logging a policy's matched rounds
    (where the logged item is the one it would have shown) are a random sample of its
    decisions, so its response is clicks / matched rounds; lifts against the control's clicks /
    rounds with the report's intervals (``segone.campaigns.measure.proportion_lift``: Newcombe
    for the difference, log ratio for the relative lift, none when an arm has no click)."""
    from segone.campaigns.measure import proportion_lift

    c_c, n_c = control
    print(
        "The same ladder in campaign terms (as `segone campaign report`): arm = policy, "
        "response = clicks / matched rounds, control = the random logging policy on every "
        "round; Newcombe 95% interval of the difference, log-ratio interval of the relative "
        "lift.\n"
    )
    print(
        "| arm | clicks / rounds | response | control | absolute lift [95% CI] "
        "| relative lift [95% CI] |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| control: random | {c_c} / {n_c:,} | {c_c / n_c:.4f} | | | |")
    for name, (c_t, n_t) in arms.items():
        diff, (lo, hi), ratio, (r_lo, r_hi) = proportion_lift(c_t, n_t, c_c, n_c)
        rel = (
            f"{ratio - 1:+.0%} [{r_lo - 1:+.0%}, {r_hi - 1:+.0%}]"
            if ratio == ratio
            else "none (no click in the arm)"
        )
        print(
            f"| {name} | {c_t} / {n_t:,} | {c_t / n_t:.4f} | {c_c / n_c:.4f} "
            f"| {100 * diff:+.2f} pp [{100 * lo:+.2f}, {100 * hi:+.2f}] | {rel} |"
        )
    print()


def evaluate(
    logs: pd.DataFrame,
    scores: dict[str, np.ndarray],
    q_hat: np.ndarray,
    n_actions: int,
    n_positions: int,
    args: argparse.Namespace,
    dists: dict[str, np.ndarray] | None = None,
) -> None:
    """Print IPW, SNIPW and DR of each policy, and paired bootstrap comparisons.

    ``dists``: stochastic policies, as their probability of each item at each slot per round."""
    n = len(logs)
    reward = logs.click.to_numpy()
    action = logs[ITEM].to_numpy()
    position = logs.position.to_numpy() - 1  # obp's 0-based slot index
    pscore = logs.propensity_score.to_numpy()
    boot: dict[str, Any] = {"n_bootstrap": args.n_bootstrap, "random_state": args.seed}

    on_policy = on_policy_value(reward, **boot)
    uniform = np.full((n, n_actions, n_positions), 1.0 / n_actions)
    random_ipw = ipw(reward, action, pscore, uniform, position, **boot)
    assert random_ipw.value == on_policy.value, "IPW of the logging policy must be its CTR"

    print(
        f"A round is one logged item in one slot. A policy's item for a round is its k-th best "
        f"item for the logged slot k; the round 'matches' when that is the logged item "
        f"(expected {n / n_actions:.1f} of {n:,} under uniform logging). {args.n_bootstrap:,} "
        f"bootstrap draws, seed {args.seed}, 95% percentile intervals, the same draws for every "
        f"policy (paired). Exact interval: Clopper-Pearson on the matched rounds' clicks.\n"
    )
    print(
        "| policy | distinct slates | matched rounds | clicks in matched | IPW [95% CI] "
        "| SNIPW [95% CI] | exact 95% CI of SNIPW | DR [95% CI] | IPW / random |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    lo, hi = clopper_pearson(int(reward.sum()), n)
    print(
        f"| random (logging policy), on-policy CTR | all | {n:,} | {int(reward.sum())} "
        f"| {fmt_value(random_ipw)} | {fmt_value(on_policy)} | [{lo:.4f}, {hi:.4f}] | | 1.00 |"
    )
    results: dict[str, dict[str, PolicyValue]] = {}
    matched_clicks = []
    arm_counts: dict[str, tuple[int, int]] = {}
    policies: list[tuple[str, np.ndarray, str]] = []
    for name, s in scores.items():
        slates = len({tuple(row) for row in np.argsort(-s, axis=1, kind="stable")[:, :3]})
        policies.append((name, ranking_action_dist(s, n_positions), f"{slates:,}"))
    for name, dist in (dists or {}).items():
        policies.append((name, dist, "random"))
    for name, dist, slates in policies:
        matched = dist[np.arange(n), action, position] > 0
        res = {
            "ipw": ipw(reward, action, pscore, dist, position, **boot),
            "snipw": snipw(reward, action, pscore, dist, position, **boot),
            "dr": doubly_robust(reward, action, pscore, dist, q_hat, position, **boot),
        }
        results[name] = res
        clicks = int(reward[matched].sum())
        matched_clicks.append(clicks)
        arm_counts[name] = (clicks, int(matched.sum()))
        lo, hi = clopper_pearson(clicks, int(matched.sum()))
        print(
            f"| {name} | {slates} | {int(matched.sum())} | {clicks} "
            f"| {fmt_value(res['ipw'])} | {fmt_value(res['snipw'])} | [{lo:.4f}, {hi:.4f}] "
            f"| {fmt_value(res['dr'])} | {res['ipw'].relative_to(on_policy.value):.2f} |",
            flush=True,
        )
    print()
    names = list(scores)
    for d in dists or {}:
        # the Thompson policy against mass and random
        lo_r = ipw(reward, action, pscore, uniform, position, **boot)
        for est in ("ipw", "snipw", "dr"):
            v = results[d][est]
            print(
                f"{d} {est.upper()}: {v.value:.4f} [{v.low:.4f}, {v.high:.4f}] = "
                f"{v.value / on_policy.value:.2f}x random (random {lo_r.value:.4f}); "
                f"P(> mass) {prob_greater(v, results[names[0]][est]):.3f}"
            )
    if dists:
        print(
            "obp's quickstart estimates a Bernoulli Thompson-sampling policy at 1.198x the "
            "random policy's CTR by IPW on this sample (the published figure in "
            "../shared/data/README.md); quoted, not recomputed here.\n"
        )
    print(
        "Paired bootstrap: share of draws in which the first policy's estimate is higher, "
        "(and lower); ties, e.g. both 0 when no click falls on either's matched rounds, are "
        "neither.\n"
    )
    print("| comparison | IPW | SNIPW | DR |")
    print("|---|---|---|---|")
    for a, b in [(names[2], names[0]), (names[2], names[1]), (names[1], names[0])]:
        cells = []
        for est in ("ipw", "snipw", "dr"):
            gt = prob_greater(results[a][est], results[b][est])
            lt = prob_greater(results[b][est], results[a][est])
            cells.append(f"{gt:.3f} ({lt:.3f})")
        print(f"| {a.split(' ')[0]} > {b.split(' ')[0]} | {' | '.join(cells)} |")
    print()
    # deterministic policies only: for a stochastic one, clicks on the rounds it could have
    # chosen are not its value (its IPW above weights them by its probabilities)
    ladder_table((int(reward.sum()), n), {k: arm_counts[k] for k in scores})
    ceiling = max(clopper_pearson(0, int(n / n_actions))[1], 0.0) / on_policy.value
    print(
        f"Reading: {sum(matched_clicks)} clicks fall on the {len(names)} policies' matched rounds "
        f"in all. The exact intervals allow each policy anything from 0 to roughly "
        f"{ceiling:.0f}x the random CTR, so the data cannot rank them"
        + (
            "; with no click on a policy's matched rounds its IPW and SNIPW are exactly 0 and "
            "their bootstrap intervals collapse to [0, 0], which reflects no information, not "
            "certainty."
            if min(matched_clicks) == 0
            else "."
        )
        + " DR adds the reward model's view: its differences come from that model (which "
        "chose policy (c), so it favours (c) by construction) and from how many rounds happen "
        "to match (each match subtracts about 80 x P(click) / rounds), not from observed clicks; "
        "its interval holds the reward model fixed.\n"
    )


if __name__ == "__main__":
    raise SystemExit(main())

"""Simulated responses on the generated store, and the ladder: mass < segment < one-to-one?

The generator (``segone sample``) knows each person's true state; segone only sees the records.
A campaign planned by segone from the records is played out against that truth with the
**response model** below, so what segone measures can be compared with what truly happened.

Response model (per assigned person, over the attribution window of W days after the send):

* **organic purchase** (with or without a message): the person's true purchase process is
  Poisson with rate λ (``purchase_rate_per_year``) while alive, so
  ``p0 = 1 - exp(-λ·W/365)``; a truly churned person (``churned``) keeps
  ``DORMANT`` (10%) of that rate.
* **message-caused purchase** ``u`` (only for people contacted), the product of:

  - *seen*: the person's true e-mail open probability (``email_open_prob``) — the channel
    preference of the generator;
  - *intent*: the purchase the message can bring forward: ``1 - exp(-λ·H/365)`` with
    ``H = INTENT_DAYS`` (90), times ``DORMANT`` for the truly churned — the person's stage;
  - *relevance* of the products shown to the person's true current taste (the generator's
    ``top_category``, or ``top_category_after`` once their life event has happened):
    ``RELEVANCE_EXACT`` (1.0) when a product is of that category, ``RELEVANCE_FAMILY`` (0.35)
    when one shares its top level, ``RELEVANCE_NONE`` (0.08) otherwise;
  - *price*: a true discount seeker responds ``SEEKER_BOOST`` (1.5×) to an offer with a
    discount, others 1×;
  - *fatigue*: ``exp(-FATIGUE · m)`` where m is the number of marketing e-mails delivered to
    the person in the 30 days before the send (from the store's events);

  so the purchase probability of a contacted person is ``1 - (1 - p0)(1 - u)``.
* **revenue** of a purchase: the person's true mean order value (revenue / orders in the
  truth; the population's mean for people who never bought), times a Gamma(4, 1/4) draw.

Nothing here targets a response rate: the arms differ only in whom they reach with which
products at what time, using what segone knows (its profiles, segments and recommendations),
and the rates are whatever the truth makes of that. Because the generator's purchases are
memoryless (Poisson), the *timing* of a one-to-one send has no true effect in this model; the
doc page says so next to the figures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import ibis
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from segone.campaigns.campaign import Campaign, campaign_settings
from segone.campaigns.holdouts import TREATMENT, expected_shares
from segone.campaigns.measure import Conversion, ensure_tables, measure
from segone.campaigns.run import Plan, plan, run
from segone.campaigns.service import pooled_arms
from segone.exceptions import SimulationError
from segone.store.base import Warehouse

DORMANT = 0.1
INTENT_DAYS = 90
RELEVANCE_EXACT = 1.0
RELEVANCE_FAMILY = 0.35
RELEVANCE_NONE = 0.08
SEEKER_BOOST = 1.5
FATIGUE = 0.25

LADDER_NAME = "ladder"
LADDER_TABLE = "campaign_ladder_conversions"


def person_of_customer(wh: Warehouse, truth_dir: Path) -> pd.DataFrame:
    """customer_id -> the true person holding most of its records."""
    rec = pq.read_table(
        truth_dir / "records.parquet", columns=["table", "source", "key", "person_id", "rejected"]
    ).to_pandas()
    rec = rec[~rec.rejected]
    src = rec.source.fillna("")
    rec["record_key"] = rec.key.where(src == "", src + ":" + rec.key)
    t = wh.stage(
        "_segone_sim_truth",
        pa.table(
            {
                "record_table": rec.table.to_numpy(),
                "record_key": rec.record_key.to_numpy(),
                "person_id": rec.person_id.to_numpy(),
            }
        ),
        append=False,
    )
    rc = wh.table("record_customers")
    j = rc.join(t, ["record_table", "record_key"])
    g = j.group_by(["customer_id", "person_id"]).aggregate(n=j.count())
    df = wh.execute(g)
    wh.drop_staging("_segone_sim_truth")
    df = df.sort_values(["customer_id", "n", "person_id"], ascending=[True, False, True])
    return df.drop_duplicates("customer_id")[["customer_id", "person_id"]]


@dataclass
class TrueState:
    """Per customer_id, the truth the response model reads (aligned arrays)."""

    customer_id: np.ndarray
    rate: np.ndarray
    churned: np.ndarray
    open_p: np.ndarray
    taste: np.ndarray  # true current top category ("A > B")
    seeker: np.ndarray
    order_value: np.ndarray

    def index(self) -> dict[str, int]:
        return {str(c): i for i, c in enumerate(self.customer_id)}


def true_state(wh: Warehouse, truth_dir: str | Path, at: datetime) -> TrueState:
    truth_dir = Path(truth_dir)
    if not (truth_dir / "people.parquet").exists():
        raise SimulationError(
            f"no ground truth in {truth_dir}: the ladder needs a store made by "
            "`segone sample` or `segone demo`"
        )
    people = pq.read_table(truth_dir / "people.parquet").to_pandas()
    life = pq.read_table(truth_dir / "life_events.parquet").to_pandas()
    life = life[pd.to_datetime(life.happened_at, utc=True) <= pd.Timestamp(at)]
    people = people.merge(life[["person_id", "top_category_after"]], on="person_id", how="left")
    people["taste"] = people.top_category_after.fillna(people.top_category)
    mean_value = float(people.revenue.sum() / max(people.n_orders.sum(), 1))
    people["order_value"] = np.where(
        people.n_orders > 0, people.revenue / people.n_orders.clip(lower=1), mean_value
    )
    m = person_of_customer(wh, truth_dir).merge(people, on="person_id")
    churned = m.churned.to_numpy(bool) & (
        pd.to_datetime(m.churned_at, utc=True) <= pd.Timestamp(at)
    ).fillna(False).to_numpy(bool)
    return TrueState(
        m.customer_id.astype(str).to_numpy(),
        m.purchase_rate_per_year.to_numpy(float),
        churned,
        m.email_open_prob.to_numpy(float),
        m.taste.astype(str).to_numpy(),
        m.discount_seeker.to_numpy(bool),
        m.order_value.to_numpy(float),
    )


def recent_deliveries(wh: Warehouse, at: datetime, days: int = 30) -> dict[str, int]:
    from segone.segments.batch import customer_events

    ev = customer_events(wh)
    lo = ibis.literal(at - timedelta(days=days), type="timestamp('UTC')")
    hi = ibis.literal(at, type="timestamp('UTC')")
    ev = ev.filter((ev.name == "Email Delivered") & (ev.timestamp > lo) & (ev.timestamp <= hi))
    df = wh.execute(ev.group_by("customer_id").aggregate(n=ev.count()))
    return {str(c): int(n) for c, n in zip(df.customer_id, df.n, strict=True)}


def relevance(taste: str, categories: Sequence[str | None]) -> float:
    """How well products of ``categories`` match a true taste (see the module docstring)."""
    best = RELEVANCE_NONE
    top = taste.split(" > ")[0]
    for c in categories:
        if not c:
            continue
        if c == taste or c.startswith(taste + " > "):
            return RELEVANCE_EXACT
        if c.split(" > ")[0] == top:
            best = max(best, RELEVANCE_FAMILY)
    return best


def response_probabilities(
    p: Plan, state: TrueState, fatigue: Mapping[str, int], window_days: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """(p0, p_if_contacted, treated mask, truth index) of the plan's people found in the truth."""
    idx = state.index()
    rows = [(k, idx[x.customer_id]) for k, x in enumerate(p.people) if x.customer_id in idx]
    ti = np.array([i for _, i in rows], dtype=int)
    lam = state.rate[ti]
    dormant = np.where(state.churned[ti], DORMANT, 1.0)
    p0 = 1 - np.exp(-lam * dormant * window_days / 365)
    intent = (1 - np.exp(-lam * INTENT_DAYS / 365)) * dormant
    rel = np.empty(len(rows))
    price = np.ones(len(rows))
    tired = np.empty(len(rows))
    treated = np.zeros(len(rows), dtype=bool)
    for j, (k, i) in enumerate(rows):
        x = p.people[k]
        rel[j] = relevance(str(state.taste[i]), [pr.get("category") for pr in x.products])
        if state.seeker[i] and x.offer.get("discount"):
            price[j] = SEEKER_BOOST
        tired[j] = np.exp(-FATIGUE * fatigue.get(x.customer_id, 0))
        treated[j] = x.group == TREATMENT
    u = np.clip(state.open_p[ti] * intent * rel * price * tired, 0, 1)
    p1 = 1 - (1 - p0) * (1 - u)
    return p0, p1, treated, [k for k, _ in rows]


def ladder_campaign(wh: Warehouse, catalogue: Any, *, window_days: int) -> Campaign:
    """One audience (buyers reachable by e-mail), four arms and a 20% holdout."""
    from segone.campaigns.run import popular_products

    top = popular_products(wh, None, 1)
    mass_cat = str(top[0]["category"]).split(" > ")[0] if top else None
    offers: dict[str, dict[str, Any]] = {}
    if catalogue is not None:
        p = wh.table("profiles")
        from segone.segments.batch import memberships

        m = memberships(wh, catalogue, datetime.now().astimezone())
        j = m.join(p.select("customer_id", "top_category"), "customer_id")
        j = j.filter(j.top_category.notnull())
        g = wh.execute(j.group_by(["segment", "top_category"]).aggregate(n=j.count()))
        sizes = g.groupby("segment").n.sum().sort_values(ascending=False)
        for seg in list(sizes.index)[:8]:
            best = (
                g[g.segment == seg]
                .sort_values(["n", "top_category"], ascending=[False, True])
                .iloc[0]
            )
            offers[str(seg)] = {
                "title": f"Picked for {seg}",
                "category": str(best.top_category),
                "discount": 10,
            }
    offers["default"] = {"title": "Our bestsellers", "category": mass_cat, "discount": 10}
    obj = {
        "name": LADDER_NAME,
        "description": "mass vs segment vs triggered vs one-to-one on the generated store",
        "audience": {"rule": {"orders": {"gte": 1}}},
        "channel": "email",
        "holdout": 0.2,
        "arms": [
            {
                "name": "mass",
                "kind": "mass",
                "offer": {"title": "10% off", "category": mass_cat, "discount": 10},
            },
            {"name": "segment", "kind": "segment", "offers": offers},
            {
                "name": "triggered",
                "kind": "triggered",
                "trigger": {"event": "Product", "within_days": 30},
                "offer": {"title": "Still thinking about it?", "discount": 10},
            },
            {
                "name": "one_to_one",
                "kind": "one_to_one",
                "offer": {"title": "Chosen for you", "discount": 10},
            },
        ],
        "message": {
            "subject": "{{ first_name or 'Hello' }}: {{ offer.title }}",
            "text": "{% for p in products %}- {{ p.name }}\n{% endfor %}{{ reason }}\n",
        },
        "fields": ["first_name", "top_category"],
        "attribution": {"window_days": window_days},
        "conversion": {"kind": "table", "name": LADDER_TABLE},
        "frequency_cap": {"max": 1000, "days": 1},
    }
    return Campaign.from_obj(obj, "<ladder>")


def run_ladder(
    project: Any, *, truth_dir: Path, window_days: int = 30, seed: int = 0, plays: int = 200
) -> dict[str, Any]:
    """Plan the ladder with segone, play it out against the truth, measure it like any campaign.

    Writes ``campaigns/ladder.yaml`` (so ``segone campaign report ladder`` shows it again), the
    ladder's assignments and ``campaign_ladder_conversions`` (real orders before the send,
    simulated ones after)."""
    from segone.campaigns.measure import conversions
    from segone.segments import project_catalogue

    settings = campaign_settings(project.root)
    with project.warehouse() as wh:
        ensure_tables(wh)
        if "scores" not in wh.tables() or wh.count("profiles") == 0:
            raise SimulationError("no profiles: run `segone build` first")
        # the send happens just after the build's as-of time: the truth knows nothing later
        at_v = wh.execute(wh.table("scores").as_of.max())
        at = pd.Timestamp(at_v).to_pydatetime() + timedelta(seconds=1)
        cat = project_catalogue(project, wh)
        c = ladder_campaign(wh, cat, window_days=window_days)
        folder = project.root / "campaigns"
        folder.mkdir(exist_ok=True)
        spec = {k: v for k, v in _campaign_yaml(c).items()}
        (folder / f"{LADDER_NAME}.yaml").write_text(
            yaml.safe_dump(spec, sort_keys=False), encoding="utf-8"
        )
        p = plan(wh, c, at=at, settings=settings, catalogue=cat)
        if not p.people:
            raise SimulationError("the ladder audience is empty")
        state = true_state(wh, truth_dir, at)
        tired = recent_deliveries(wh, at)
        p0, p1, treated, ks = response_probabilities(p, state, tired, window_days)
        rng = np.random.default_rng(seed)
        prob = np.where(treated, p1, p0)
        conv = rng.random(len(prob)) < prob
        idx = state.index()
        cids = [p.people[k].customer_id for k in ks]
        value = np.array([state.order_value[idx[cid]] for cid in cids]) * rng.gamma(
            4.0, 0.25, len(cids)
        )
        when = [at + timedelta(days=float(d)) for d in rng.uniform(0.01, window_days, len(cids))]
        # forget a previous ladder: its rows would mix two plays
        for table in ("campaign_assignments", "campaign_exposures", "campaign_runs"):
            wh.delete_matching(table, ibis.memtable({"campaign": [LADDER_NAME]}), ["campaign"])
        run(wh, p, settings=settings, sender=None)
        real = conversions(wh, Conversion("order"))
        real = real.filter(real.ts <= ibis.literal(at, type="timestamp('UTC')"))
        sim = ibis.memtable(
            pa.table(
                {
                    "customer_id": pa.array(
                        [cid for cid, ok in zip(cids, conv, strict=True) if ok], pa.string()
                    ),
                    "ts": pa.array(
                        [w for w, ok in zip(when, conv, strict=True) if ok],
                        pa.timestamp("us", tz="UTC"),
                    ),
                    "revenue": pa.array(value[conv], pa.float64()),
                }
            )
        )
        wh.replace(LADDER_TABLE, real.select("customer_id", "ts", "revenue").union(sim))
        rep = measure(
            wh,
            LADDER_NAME,
            c.conversion,
            arms=[a.name for a in c.arms],
            expected=expected_shares(c.holdout, settings.holdouts.global_control),
            window_days=window_days,
            pooled=pooled_arms(c),
        )
    arm_of = np.array([p.people[k].arm for k in ks])
    true_rates: dict[str, float] = {}
    true_lift: dict[str, float] = {}
    for a in c.arms:
        sel = arm_of == a.name
        if sel.any():
            true_rates[a.name] = (
                float(p1[sel & treated].mean()) if (sel & treated).any() else float("nan")
            )
            true_lift[a.name] = float((p1[sel] - p0[sel]).mean())
    true_rates["holdout (no message)"] = (
        float(p0[~treated].mean()) if (~treated).any() else float("nan")
    )
    kinds = {a.name: a.kind for a in c.arms}
    return {
        "at": at.isoformat(),
        "funnel": p.funnel(),
        "matched_to_truth": len(ks),
        "true_rates": true_rates,
        "true_lift": true_lift,
        "report": rep.to_dict(),
        "replays": replay_coverage(p0, p1, treated, arm_of, kinds, plays=plays, seed=seed + 1),
    }


def replay_coverage(
    p0: np.ndarray,
    p1: np.ndarray,
    treated: np.ndarray,
    arm_of: np.ndarray,
    kinds: Mapping[str, str],
    *,
    plays: int = 200,
    seed: int = 1,
) -> dict[str, dict[str, float]]:
    """Play the same plan ``plays`` times (new response draws, same people and groups) and
    count how often each arm's 95% Newcombe interval holds the model's true lift for these
    people (mean p1 of the arm's treated minus mean p0 of its control), and how often it
    excludes 0: the honesty and the power of the report at this size."""
    from segone.campaigns.measure import proportion_lift

    rng = np.random.default_rng(seed)
    draws = rng.random((plays, len(p0)))
    conv = draws < np.where(treated, p1, p0)[None, :]
    pooled = np.isin(arm_of, [a for a, k in kinds.items() if k != "triggered"])
    out: dict[str, dict[str, float]] = {}
    for arm in kinds:
        t = (arm_of == arm) & treated
        ctl = (pooled if arm in pooled_names(kinds) else arm_of == arm) & ~treated
        if not t.any() or not ctl.any():
            continue
        truth = float(p1[t].mean() - p0[ctl].mean())
        _, (lo, hi), _, _ = proportion_lift(
            conv[:, t].sum(axis=1), t.sum(), conv[:, ctl].sum(axis=1), ctl.sum()
        )
        out[arm] = {
            "true_lift": truth,
            "coverage": float(np.mean((lo <= truth) & (truth <= hi))),
            "significant": float(np.mean((lo > 0) | (hi < 0))),
        }
    return out


def pooled_names(kinds: Mapping[str, str]) -> set[str]:
    return {a for a, k in kinds.items() if k != "triggered"}


def _campaign_yaml(c: Campaign) -> dict[str, Any]:
    arms = []
    for a in c.arms:
        d: dict[str, Any] = {"name": a.name, "kind": a.kind}
        if a.offer:
            d["offer"] = dict(a.offer)
        if a.offers:
            d["offers"] = {k: dict(v) for k, v in a.offers.items()}
        if a.trigger:
            d["trigger"] = dict(a.trigger)
        arms.append(d)
    msg = c.message
    return {
        "name": c.name,
        "description": c.description,
        "audience": {"rule": c.audience.rule},
        "channel": c.channel,
        "holdout": c.holdout,
        "arms": arms,
        "message": {"subject": msg.subject, "text": msg.text} if msg else None,
        "fields": list(c.fields),
        "attribution": {"window_days": c.window_days},
        "conversion": {"kind": c.conversion.kind, "name": c.conversion.name},
        "frequency_cap": {"max": c.caps.max_contacts, "days": c.caps.days},
    }

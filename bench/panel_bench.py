"""Brand choice on a household purchase panel, through the user's path: does ``/v1/decide``
beat mass, segment and the household's own favourite?

    python bench/panel_bench.py [PANEL.csv] [--holdout 0.2] [--keep]

The panel (default: the Yogurt panel, ``../shared/data/panels/Yogurt.csv``; any file of the same
shape works: a household column ``id``, a choice column, ``price.<brand>`` for every brand and
optionally ``feat.<brand>`` / ``disp.<brand>`` flags, occasions in time order per household)
has no dates. Each household's occasions are given one a week, in order; its last ``holdout``
share (at least one occasion) is held out. The dates are laid out so that every household's
last training occasion falls in the week before the cutoff, so one global cutoff splits every
household exactly where its own 80/20 split is (a per-household split through a global date).

The user's path, as a shop would run it at the cutoff:

1. ``segone init``; an orders CSV (one order per training occasion: the chosen brand at its
   price) and a products CSV (one product per brand, its usual price = the median price of the
   brand over the training occasions, category ``<panel> > <brand>``) are ingested with
   ``segone ingest``; the held-out occasions are in the future and are not ingested;
2. ``segone serve`` runs (it creates the online store), then ``segone build`` builds and
   publishes (its as-of is now, just after the cutoff: the same tables as ``--as-of`` the
   cutoff, since nothing later is loaded; an as-of build does not publish);
3. for every held-out occasion, ``POST /v1/decide`` for the household with the brands as
   candidates: once as plain ids ("decide"), once as offer objects with that occasion's
   ``price``, ``feature`` and ``display`` ("decide + context"). The item with the highest
   ``score`` is the prediction; the items' ``probability`` (renormalised over the brands) is
   scored by log loss.

References computed from the training occasions alone: mass (the most popular brand), segment
(k-means on the households' past brand shares, k = 4), the household's own most frequent brand
(ties: the more popular), segone's published taste profile (``category_affinity``, top share),
segone's next products (rank 1), and a conditional logit with brand constants, price, feature,
display and household loyalty (Guadagni-Little, smoothing 0.8, frozen at the cutoff for the
held-out occasions, like every other method here: no method sees a held-out choice), fitted
by maximum likelihood on the training occasions.

Log loss of references without probabilities of their own: mass = training shares; segment =
the segment's shares (+0.5 per brand); own = the household's shares (+0.5 per brand).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
from scipy.optimize import minimize
from sklearn.cluster import KMeans

HERE = Path(__file__).resolve().parent
DEFAULT = HERE.parent.parent.parent / "shared" / "data" / "panels" / "Yogurt.csv"
HOST = "127.0.0.1"
DECIDE_TOKEN = "dk_panel"
ADMIN_TOKEN = "adm_panel"
WRITE_KEY = "wk_panel"


# -- the panel -------------------------------------------------------------------------------------
def load_panel(path: Path) -> tuple[pd.DataFrame, list[str], str]:
    """The panel, its brands, and the name of its choice column."""
    df = pd.read_csv(path)
    df = df.drop(columns=[c for c in df.columns if c.startswith("Unnamed") or c == ""])
    if "id" not in df.columns:
        raise SystemExit(f"{path}: no household column 'id'")
    brands = [c[len("price.") :] for c in df.columns if c.startswith("price.")]
    if len(brands) < 2:
        raise SystemExit(f"{path}: needs price.<brand> columns for at least two brands")
    choice = next(
        (c for c in df.columns if df[c].dtype == object and set(df[c].astype(str)) <= set(brands)),
        None,
    )
    if choice is None:
        raise SystemExit(f"{path}: no column whose values are the brands {brands}")
    for kind in ("feat", "disp"):
        for b in brands:
            if f"{kind}.{b}" not in df.columns:
                df[f"{kind}.{b}"] = 0
    df = df.rename(columns={choice: "choice"})
    df["occasion"] = df.groupby("id").cumcount()
    df["n"] = df.groupby("id")["id"].transform("size")
    return df, brands, choice


def split(df: pd.DataFrame, holdout: float) -> pd.DataFrame:
    """``test`` flag: each household's last ``holdout`` share of occasions (at least one, and
    households with a single occasion kept for training only)."""
    n_test = np.maximum(1, np.round(df.n * holdout)).astype(int)
    n_test = np.where(df.n >= 2, n_test, 0)
    df = df.assign(n_train=df.n - n_test)
    return df.assign(test=df.occasion >= df.n_train)


# -- the user's path ------------------------------------------------------------------------------
def segone(project: Path, *args: str) -> str:
    cmd = [sys.executable, "-c", "from segone.cli import main; main()", *args, "-p", str(project)]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ})
    if r.returncode != 0:
        raise SystemExit(f"segone {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")
    return r.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def write_inputs(
    df: pd.DataFrame, brands: list[str], name: str, work: Path, cutoff: datetime
) -> tuple[Path, Path, dict[str, float]]:
    train = df[~df.test]
    usual = {b: float(train[f"price.{b}"].median()) for b in brands}
    rows = []
    for r in train.to_dict("records"):
        # occasion k of a household with t training occasions: t - k weeks before the cutoff
        weeks_back = int(r["n_train"]) - int(r["occasion"])
        ts = cutoff - timedelta(days=7 * weeks_back) + timedelta(minutes=int(r["id"]) % 600)
        price = float(r[f"price.{r['choice']}"])
        rows.append(
            {
                "order_id": f"o{r['id']}-{r['occasion']}",
                "user_id": f"h{r['id']}",
                "ts": ts.isoformat(),
                "product_id": r["choice"],
                "category": f"{name} > {r['choice']}",
                "quantity": 1,
                "unit_price": round(price, 4),
                "amount": round(price, 4),
            }
        )
    orders = work / "orders.csv"
    pd.DataFrame(rows).to_csv(orders, index=False)
    products = work / "products.csv"
    pd.DataFrame(
        {
            "product_id": brands,
            "name": [f"{b.title()} {name.lower()}" for b in brands],
            "category": [f"{name} > {b}" for b in brands],
            "price": [round(usual[b], 4) for b in brands],
            "brand": [b.title() for b in brands],
        }
    ).to_csv(products, index=False)
    return orders, products, usual


def wait_up(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 600  # a shared, loaded machine starts a server slowly
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited; log:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://{HOST}:{port}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit("server did not start")


def wait_published(port: int, household: str) -> None:
    """Until the server has picked up the build's publish (it checks once a second)."""
    h = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        r = httpx.get(f"http://{HOST}:{port}/v1/profiles/user_id:{household}", headers=h)
        if r.status_code == 200 and r.json().get("published_at"):
            time.sleep(1.5)
            return
        time.sleep(0.3)
    raise SystemExit("the server never saw the build's publish")


def decide_all(port: int, test: pd.DataFrame, brands: list[str], context: bool) -> pd.DataFrame:
    """Top item and each brand's probability, per held-out occasion."""
    h = {"Authorization": f"Bearer {DECIDE_TOKEN}"}
    out = []
    with httpx.Client(base_url=f"http://{HOST}:{port}", headers=h, timeout=30) as c:
        for r in test.to_dict("records"):
            if context:
                cands: list[Any] = [
                    {
                        "id": b,
                        "price": float(r[f"price.{b}"]),
                        "feature": bool(r[f"feat.{b}"]),
                        "display": bool(r[f"disp.{b}"]),
                    }
                    for b in brands
                ]
            else:
                cands = list(brands)
            body = {
                "identifier": f"user_id:h{r['id']}",
                "placement": "panel",
                "candidates": cands,
                "limit": len(brands),
                "follow_up": False,
            }
            resp = c.post("/v1/decide", json=body)
            if resp.status_code != 200:
                raise SystemExit(f"/v1/decide answered {resp.status_code}: {resp.text}")
            items = resp.json()["items"]
            if not items:  # everything left out (e.g. as bought before): no prediction
                out.append({"top": None, "reason": "(nothing offered)"})
                continue
            best = max(items, key=lambda i: i["score"])
            prob = {i["id"]: i.get("probability") for i in items}
            row = {"top": best["id"], "reason": (best.get("reasons") or [""])[0]}
            if all(isinstance(prob.get(b), int | float) for b in brands):
                p = np.array([prob[b] for b in brands], float)
                row.update({f"p.{b}": v for b, v in zip(brands, p / p.sum(), strict=True)})
            out.append(row)
    return pd.DataFrame(out, index=test.index)


def run_segone(
    df: pd.DataFrame, brands: list[str], name: str, keep: bool
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str], dict[str, str], float]:
    work = Path(tempfile.mkdtemp(prefix="segone-panel-"))
    project = work / "shop"
    now = datetime.now(UTC)
    cutoff = now.replace(hour=0, minute=0, second=0, microsecond=0)
    t0 = time.perf_counter()
    proc = None
    try:
        subprocess.run(
            [sys.executable, "-c", "from segone.cli import main; main()", "init", str(project)],
            check=True,
            capture_output=True,
        )
        cfg = project / "segone.toml"
        text = cfg.read_text()
        text = text.replace("write_keys = []", f'write_keys = ["{WRITE_KEY}"]')
        text = text.replace("admin_tokens = []", f'admin_tokens = ["{ADMIN_TOKEN}"]')
        text = text.replace("decide_tokens = []", f'decide_tokens = ["{DECIDE_TOKEN}"]')
        cfg.write_text(text)
        orders, products, _ = write_inputs(df, brands, name, work, cutoff)
        segone(project, "ingest", "products", str(products))
        segone(project, "ingest", "orders", str(orders))
        port = free_port()
        log = work / "server.log"
        cmd = [
            sys.executable,
            "-c",
            "from segone.cli import main; main()",
            "serve",
            "-p",
            str(project),
            "--port",
            str(port),
        ]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log.open("wb"))
        wait_up(port, proc, log)
        segone(project, "build")
        first = df[df.test].iloc[0]
        wait_published(port, f"h{first['id']}")
        test = df[df.test]
        plain = decide_all(port, test, brands, context=False)
        ctx = decide_all(port, test, brands, context=True)
        taste, nextp = read_batch(project)
        return plain, ctx, taste, nextp, time.perf_counter() - t0
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        if keep:
            print(f"(project kept in {work})")
        else:
            shutil.rmtree(work, ignore_errors=True)


def read_batch(project: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Each household's top taste (``category_affinity``) and rank-1 next product."""
    from segone.project import Project

    with Project.open(project).warehouse(read_only=True) as wh:
        a = wh.to_arrow(wh.table("category_affinity")).to_pandas()
        r = wh.to_arrow(wh.table("recommendations")).to_pandas()
        cm = wh.to_arrow(wh.table("customer_map")).to_pandas()
    who = (
        cm[cm.node.str.startswith("user_id:")].set_index("customer_id").node.str[len("user_id:") :]
    )
    a = a.sort_values(["customer_id", "share"], ascending=[True, False])
    top = a.drop_duplicates("customer_id")
    taste = {
        who.get(c, c): cat.split(" > ")[-1]
        for c, cat in zip(top.customer_id, top.category, strict=True)
    }
    r1 = r[r["rank"] == 1]
    nextp = {who.get(c, c): p for c, p in zip(r1.customer_id, r1.product_id, strict=True)}
    return taste, nextp


# -- references ------------------------------------------------------------------------------------
def shares(train: pd.DataFrame, brands: list[str], prior: float) -> pd.DataFrame:
    n = pd.crosstab(train.id, train.choice).reindex(columns=brands, fill_value=0).astype(float)
    n = n + prior
    return n.div(n.sum(axis=1), axis=0)


def conditional_logit(
    train: pd.DataFrame, test: pd.DataFrame, brands: list[str], mass: np.ndarray
) -> np.ndarray:
    """Brand constants, price, feature, display and Guadagni-Little loyalty (0.8), fitted on
    the training occasions; loyalty frozen at the cutoff for the held-out ones."""
    lam = 0.8
    j = len(brands)
    code = {b: k for k, b in enumerate(brands)}

    def features(rows: pd.DataFrame, loyalty: np.ndarray) -> np.ndarray:
        price = rows[[f"price.{b}" for b in brands]].to_numpy(float)
        feat = rows[[f"feat.{b}" for b in brands]].to_numpy(float)
        disp = rows[[f"disp.{b}" for b in brands]].to_numpy(float)
        return np.stack([price, feat, disp, loyalty], axis=2)

    loy_train, last = [], {}
    for hid, g in train.groupby("id", sort=False):
        cur = mass.copy()
        for c in g.choice:
            loy_train.append(cur.copy())
            onehot = np.zeros(j)
            onehot[code[c]] = 1.0
            cur = lam * cur + (1 - lam) * onehot
        last[hid] = cur
    x_tr = features(train, np.array(loy_train))
    y_tr = train.choice.map(code).to_numpy()
    used = [k for k, f in enumerate(["price", "feat", "disp", "loy"]) if x_tr[:, :, k].std() > 0]
    x_tr = x_tr[:, :, used]

    def utilities(theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        alpha = np.concatenate([[0.0], theta[: j - 1]])
        return alpha[None, :] + x @ theta[j - 1 :]

    def nll(theta: np.ndarray) -> float:
        u = utilities(theta, x_tr)
        u = u - u.max(axis=1, keepdims=True)
        return float(-(u[np.arange(len(y_tr)), y_tr] - np.log(np.exp(u).sum(axis=1))).sum())

    theta = minimize(nll, np.zeros(j - 1 + len(used)), method="BFGS").x
    loy_test = np.array([last.get(h, mass) for h in test.id])
    x_te = features(test, loy_test)[:, :, used]
    u = utilities(theta, x_te)
    p = np.exp(u - u.max(axis=1, keepdims=True))
    names = ["price", "feature", "display", "loyalty"]
    print(
        "conditional logit: "
        + ", ".join(f"{names[k]} {b:+.3f}" for k, b in zip(used, theta[j - 1 :], strict=True))
    )
    return np.asarray(p / p.sum(axis=1, keepdims=True))


def log_loss(p: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-15, 1))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("panel", nargs="?", type=Path, default=DEFAULT)
    ap.add_argument("--holdout", type=float, default=0.2)
    ap.add_argument("--keep", action="store_true", help="keep the temporary project")
    args = ap.parse_args()
    df, brands, _ = load_panel(args.panel)
    df = split(df, args.holdout)
    name = args.panel.stem.title()
    train, test = df[~df.test], df[df.test]
    code = {b: k for k, b in enumerate(brands)}
    y = test.choice.map(code).to_numpy()
    j = len(brands)
    print(
        f"{args.panel.name}: {df.id.nunique()} households, {len(df):,} occasions, brands "
        f"{', '.join(brands)}; {len(train):,} training, {len(test):,} held out"
    )

    counts = train.choice.value_counts().reindex(brands, fill_value=0).to_numpy(float)
    mass = counts / counts.sum()
    rows: list[tuple[str, np.ndarray, np.ndarray | None]] = []
    rows.append(("mass (most popular)", np.full(len(test), int(np.argmax(mass))), mass[None, :]))

    own = shares(train, brands, 0.0)
    km = KMeans(n_clusters=4, n_init=10, random_state=0).fit(own.to_numpy())
    seg_of = pd.Series(km.labels_, index=own.index)
    seg_counts = (
        pd.crosstab(train.id.map(seg_of), train.choice).reindex(columns=brands, fill_value=0) + 0.5
    )
    seg_p = seg_counts.div(seg_counts.sum(axis=1), axis=0)
    sp = seg_p.loc[test.id.map(seg_of)].to_numpy()
    rows.append(("segment (k-means on shares, k=4)", sp.argmax(axis=1), sp))

    raw = pd.crosstab(train.id, train.choice).reindex(columns=brands, fill_value=0).astype(float)
    fav = (raw + mass[None, :] * 1e-6).idxmax(axis=1).map(code)  # ties: the more popular
    op = shares(train, brands, 0.5).loc[test.id].to_numpy()
    rows.append(("household's own most frequent", fav.loc[test.id].to_numpy(), op))

    clogit = conditional_logit(train, test, brands, mass)
    rows.append(("conditional logit (price, feature, display, loyalty)", clogit.argmax(1), clogit))

    plain, ctx, taste, nextp, secs = run_segone(df, brands, name, args.keep)
    mass_top = int(np.argmax(mass))
    t_top = np.array([code.get(taste.get(f"h{h}", ""), mass_top) for h in test.id])
    rows.append(("segone taste profile (top share)", t_top, None))
    n_top = np.array([code.get(nextp.get(f"h{h}", ""), -1) for h in test.id])
    rows.append(("segone next products, rank 1", n_top, None))
    for label, d in (("segone /v1/decide, best score", plain), ("  + price/feature/display", ctx)):
        pcols = [f"p.{b}" for b in brands]
        have = all(c in d for c in pcols) and not d[pcols].isna().any().any()
        probs = d[pcols].to_numpy() if have else None
        rows.append((label, d.top.map(code).fillna(-1).to_numpy(), probs))

    print("\n| method | top-1 accuracy | log loss |\n|---|---|---|")
    for label, top, p in rows:
        acc = float(np.mean(top == y))
        if p is not None and p.shape[0] == 1:
            p = np.repeat(p, len(y), axis=0)
        ll = f"{log_loss(p, y):.3f}" if p is not None else "-"
        print(f"| {label} | {acc:.3f} | {ll} |")
    print(f"\n(uniform log loss: {math.log(j):.3f}; user path {secs:.0f} s)")
    reasons = ctx.reason.value_counts().head(5)
    print(
        "most common top reasons (decide + context): "
        + "; ".join(f"{r!r} x{n}" for r, n in reasons.items())
    )


if __name__ == "__main__":
    main()

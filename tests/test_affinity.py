"""One affinity everywhere: the preference model's probability that a person's next purchase is
in each category (``segone.models.affinity``) is the ``category_affinity`` table, the profile's
map and ``top_category``, and the category step of ``decide``; products are named in the CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from segone.cli import app
from segone.decisions import CatalogueIndex
from segone.decisions.priors import _nested
from segone.models.affinity import affinity_rows, propensity
from segone.models.preference import ItemPreferences, catalogue_fields, occasions
from segone.models.registry import top_value_customers
from segone.project import Project

DAY = 86_400.0
runner = CliRunner()


def _kept_to_categories(seed: int = 4) -> tuple[pd.DataFrame, dict[str, str]]:
    """400 people, each keeping to one of 6 categories of 8 items (the nested model's world)."""
    rng = np.random.default_rng(seed)
    within = np.array([0.35, 0.2, 0.15, 0.1, 0.08, 0.06, 0.04, 0.02])
    rows = []
    for c in range(400):
        cat = int(rng.integers(6))
        for k in range(int(rng.integers(2, 9))):
            rows.append((f"c{c}", f"k{cat}-{rng.choice(8, p=within)}", k * 7.0 * DAY))
    df = pd.DataFrame(rows, columns=["customer_id", "product_id", "t"])
    return df, {f"k{c}-{j}": f"Cat {c}" for c in range(6) for j in range(8)}


def _by_hand(m: ItemPreferences) -> pd.DataFrame:
    """(W_c + b_c) / (W + B) for every person and category, from the fit's own arrays."""
    b = m.category_prior()
    pr = m.pairs_
    cat = m.category_codes_[pr.i.to_numpy()]
    w_c = pd.Series(pr.w.to_numpy()).groupby([pr.c.to_numpy(), cat]).sum()
    rows = []
    for c in range(len(m.customers_)):
        for k, name in enumerate(m.category_names_):
            own = float(w_c.get((c, k), 0.0))
            p = (own + b[k]) / (m.totals_[c] + b.sum())
            rows.append((m.customers_[c], name, p, own))
    return pd.DataFrame(rows, columns=["customer_id", "category", "affinity", "weight"])


@pytest.mark.parametrize("nested", [True, False])
def test_the_affinity_is_the_models_category_probability(nested: bool) -> None:
    df, cats = _kept_to_categories()
    m = ItemPreferences().fit_frame(df, categories=cats)
    assert m.nested_
    if not nested:  # the same fit read as the flat model: b_c = the category's item priors
        m.nested_ = False
    got = m.category_affinity(floor=0.0).to_pandas()
    want = _by_hand(m)
    merged = want.merge(got, on=["customer_id", "category"], suffixes=("", "_got"))
    assert len(merged) == len(want) == len(got)
    assert np.allclose(merged.affinity, merged.affinity_got, rtol=1e-12)
    assert np.allclose(merged.weight, merged.weight_got, rtol=1e-12)
    assert (got.share == got.affinity).all()
    # a probability over the categories: sums to 1 per person, never 0
    assert np.allclose(got.groupby("customer_id").affinity.sum(), 1.0)
    assert (got.affinity > 0).all()
    # the floor keeps every category at or above it, bought or not, and nothing else
    cut = m.category_affinity(floor=0.05).to_pandas()
    assert (cut.affinity >= 0.05).all()
    assert len(cut) == int((want.affinity >= 0.05).sum())
    # shrinkage: the more a person bought in their category, the closer to 1
    top = got.sort_values("affinity").drop_duplicates("customer_id", keep="last")
    n = df.groupby("customer_id").size()
    few, many = n[n == 2].index, n[n == 8].index
    mine = top.set_index("customer_id").affinity
    assert mine[mine.index.isin(many)].mean() > mine[mine.index.isin(few)].mean()


def test_decide_ranks_categories_by_the_same_numbers() -> None:
    df, cats = _kept_to_categories()
    m = ItemPreferences().fit_frame(df, categories=cats)
    table = m.category_affinity(floor=0.0).to_pandas().set_index(["customer_id", "category"])
    docs = {i: {**p, "name": i, "category": cats[i]} for i, p in m.item_params().items()}
    idx = CatalogueIndex(docs)
    for person in ("c0", "c7", "c123"):
        mine = m.table().to_pandas()
        mine = mine[mine.customer_id == person]
        weights = dict(zip(mine.product_id, mine.weight, strict=True))
        keep = np.arange(len(idx))
        w = np.array([weights.get(i, 0.0) for i in idx.ids])
        got = _nested(idx, keep, weights, w, docs)
        assert got is not None
        share = got[0]
        for k, item in enumerate(idx.ids):
            assert share[k] == pytest.approx(table.loc[(person, cats[item]), "affinity"], 1e-12)


def test_affinity_rows_leave_out_what_is_asked_and_sort() -> None:
    p, c, a, w = affinity_rows(
        np.array([1, 0, 0]),
        np.array([0, 1, 2]),
        np.array([2.0, 1.0, 1.0]),
        np.array([1.0, 2.0]),
        np.array([1.0, 1.0, 1.0, 0.0]),
        floor=0.0,
        skip=np.array([False, False, True, False]),
    )
    assert list(zip(p.tolist(), c.tolist(), strict=True)) == [
        (0, 0),
        (0, 1),
        (0, 3),
        (1, 0),
        (1, 1),
        (1, 3),
    ]
    assert a[1] == pytest.approx(propensity(1.0, 1.0, 1.0, 3.0))
    assert a[3] == pytest.approx(propensity(2.0, 2.0, 1.0, 3.0))
    assert w.tolist() == [0.0, 1.0, 0.0, 2.0, 0.0, 0.0]


# -- the user's path ---------------------------------------------------------------------------
ITEMS = {
    "P1": ("Trail Runner", "Sports > Running"),
    "P2": ("Road Racer", "Sports > Running"),
    "P3": ("Running Socks", "Sports > Running"),
    "P4": ("Chef Knife", "Home > Kitchen"),
    "P5": ("Cast Iron Pan", "Home > Kitchen"),
    "P6": ("Espresso Beans", "Home > Coffee"),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A shop with a catalogue (names, categories): 60 people, each mostly in one category."""
    tmp = tmp_path_factory.mktemp("affinity")
    rng = np.random.default_rng(3)
    groups = [["P1", "P2", "P3"], ["P4", "P5"], ["P6", "P4"]]
    start = datetime(2024, 1, 2, 10, tzinfo=UTC)
    rows = ["order_id,email,ts,amount,product_id,quantity,unit_price"]
    for c in range(60):
        mine = groups[c % 3]
        for k in range(1 + c % 5):
            pick = mine[int(rng.integers(len(mine)))] if rng.random() < 0.85 else "P6"
            ts = (start + timedelta(days=20 * k + c % 11)).strftime("%Y-%m-%d %H:%M:%S")
            rows.append(f"o{c}-{k},p{c}@x.com,{ts},20,{pick},1,20")
            if k % 2:  # a second item in some orders: baskets for the recommendations
                other = mine[(k + 1) % len(mine)]
                rows.append(f"o{c}-{k},p{c}@x.com,{ts},20,{other},1,20")
    (tmp / "orders.csv").write_text("\n".join(rows) + "\n")
    prods = ["product_id,name,category,price"]
    prods += [f"{p},{n},{c},20" for p, (n, c) in ITEMS.items()]
    (tmp / "products.csv").write_text("\n".join(prods) + "\n")
    proj = tmp / "p"
    r = runner.invoke(app, ["init", str(proj)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    # what this test needs of a build, and no more (no churn model, no probabilistic matching)
    cfg = proj / "segone.toml"
    text = cfg.read_text().replace("churn = true", "churn = false")
    cfg.write_text(text.replace("probabilistic = true", "probabilistic = false"))
    for args in (
        ["ingest", "products", str(tmp / "products.csv"), "-p", str(proj)],
        ["ingest", "orders", str(tmp / "orders.csv"), "-p", str(proj)],
        ["build", "-p", str(proj), "--as-of", "2024-12-31"],
    ):
        r = runner.invoke(app, args, catch_exceptions=False)
        assert r.exit_code == 0, r.output
    return proj


def test_profile_table_and_model_hold_the_same_numbers(built: Path) -> None:
    with Project.open(built).warehouse(read_only=True) as wh:
        table = wh.execute(wh.table("category_affinity"))
        prof = wh.execute(wh.table("profiles"))
        when = datetime(2024, 12, 31, tzinfo=UTC)
        from segone.models.nextproducts import purchase_lines

        df = occasions(wh, purchase_lines(wh, as_of=when), when)
        cats, _ = catalogue_fields(wh)
    assert set(table.category) <= {c for _, c in ITEMS.values()}
    # the model refitted on the same data gives the table's numbers
    again = ItemPreferences().fit_frame(df, categories=cats, as_of=when)
    want = again.category_affinity().to_pandas()
    m = want.merge(table, on=["customer_id", "category"], suffixes=("", "_t"))
    assert len(m) == len(want) == len(table)
    assert np.allclose(m.affinity, m.affinity_t) and np.allclose(m.share_t, m.affinity_t)
    # the profile's map is the table's rows, unchanged; top_category its largest
    buyers = prof[prof.orders > 0]
    assert len(buyers) == 60
    for r in buyers.itertuples():
        mine = table[table.customer_id == r.customer_id]
        assert dict(r.category_affinity) == dict(zip(mine.category, mine.affinity, strict=True))
        assert r.top_category == mine.sort_values(["affinity"]).category.iloc[-1]


def test_cli_and_json_name_the_products(built: Path) -> None:
    with Project.open(built).warehouse(read_only=True) as wh:
        rc = wh.table("recommendations")
        cited = wh.execute(rc.filter(rc.reason.startswith("because you bought P")))
    assert len(cited), "the build recommended something for what people bought"
    who = str(cited.customer_id.iloc[0])
    r = runner.invoke(app, ["profile", who, "-p", str(built), "--json"])
    assert r.exit_code == 0, r.output
    person = json.loads(r.output)[0]
    recs = person["recommendations"]
    assert recs, "the build recommended something"
    names = {n for n, _ in ITEMS.values()}
    for rec in recs:
        assert rec["product_id"] in ITEMS  # ids kept
        assert (rec["name"], rec["category"]) == ITEMS[rec["product_id"]]
        assert "because you bought P" not in (rec["reason"] or "")
    assert any(n in (rec["reason"] or "") for rec in recs for n in names)
    text = runner.invoke(app, ["profile", who, "-p", str(built)]).output
    assert ITEMS[recs[0]["product_id"]][0] in text
    with Project.open(built).warehouse(read_only=True) as wh:
        top = top_value_customers(wh, 5)
    offered = top[top.product_id.notnull()]
    assert len(offered)
    assert (offered.name == [ITEMS[p][0] for p in offered.product_id]).all()
    assert (offered.category == [ITEMS[p][1] for p in offered.product_id]).all()

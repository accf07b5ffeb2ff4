"""Score what segone built against a generated store's ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.metrics import roc_auc_score

from segone.store.base import Warehouse


def identity_scores(wh: Warehouse, truth_dir: str | Path) -> dict[str, Any]:
    """How well ``record_customers`` recovers the true people behind the records.

    ``split_rate``: share of true people whose records landed under more than one customer_id.
    ``mixed_rate``: share of customer_ids holding records of more than one true person.

    With a truth that marks which of a person's records are linkable in principle
    (``link_group``: they share a true identifier, or a name and one more field), also the
    split a perfect resolver could avoid: ``linkable_split_rate``, the share of the people with
    linkable records (a group of 2+) that have such a group spread over several customer_ids;
    and ``split_by_design_rate``, the share of people whose records fall in several groups
    (anonymous browsing never tied to a login, a social handle nothing else carries), which
    no resolver could join.
    """
    truth = pq.read_table(Path(truth_dir) / "records.parquet").to_pandas()
    truth = truth[~truth.rejected]
    src = truth.source.fillna("")
    truth["record_key"] = truth.key.where(src == "", src + ":" + truth.key)
    grouped = "link_group" in truth.columns
    truth = truth.rename(columns={"table": "record_table"})[
        ["record_table", "record_key", "person_id", *(["link_group"] if grouped else [])]
    ]
    t = wh.stage("_segone_truth", pa.Table.from_pandas(truth, preserve_index=False), append=False)
    j = wh.table("record_customers").join(t, ["record_table", "record_key"])
    per_person = j.group_by("person_id").agg(n=j.customer_id.nunique())
    per_customer = j.group_by("customer_id").agg(n=j.person_id.nunique())
    people = int(wh.execute(per_person.count()))
    split = int(wh.execute(per_person.filter(per_person.n > 1).count()))
    customers = int(wh.execute(per_customer.count()))
    mixed = int(wh.execute(per_customer.filter(per_customer.n > 1).count()))
    matched = int(wh.execute(j.count()))
    ceiling: dict[str, Any] = {}
    if grouped:
        g = j.group_by(["person_id", "link_group"]).agg(n=j.count(), c=j.customer_id.nunique())
        per = g.group_by("person_id").agg(
            groups=g.count(),
            linkable=(g.n >= 2).cast("int64").sum(),
            split=((g.n >= 2) & (g.c > 1)).cast("int64").sum(),
        )
        row = wh.execute(
            per.aggregate(
                linkable=(per.linkable > 0).cast("int64").sum(),
                split=(per.split > 0).cast("int64").sum(),
                by_design=(per.groups > 1).cast("int64").sum(),
            )
        ).iloc[0]
        linkable, lsplit = int(row["linkable"]), int(row["split"])
        ceiling = {
            "linkable_people": linkable,
            "linkable_split_people": lsplit,
            "linkable_split_rate": lsplit / linkable if linkable else 0.0,
            "split_by_design_people": int(row["by_design"]),
            "split_by_design_rate": int(row["by_design"]) / people if people else 0.0,
        }
    wh.drop_staging("_segone_truth")
    return {
        "people": people,
        "customers": customers,
        "records_scored": matched,
        "records_in_truth": len(truth),
        "split_people": split,
        "split_rate": split / people if people else 0.0,
        "mixed_customers": mixed,
        "mixed_rate": mixed / customers if customers else 0.0,
    } | ceiling


def _prf(pred: Any, true: Any) -> dict[str, float]:
    tp = int((pred & true).sum())
    fp = int((pred & ~true).sum())
    fn = int((~pred & true).sum())
    tn = int((~pred & ~true).sum())
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {
        "accuracy": (tp + tn) / max(tp + fp + fn + tn, 1),
        "precision": p,
        "recall": r,
        "f1": 2 * p * r / (p + r) if p + r else 0.0,
    }


def lifecycle_scores(
    wh: Warehouse, truth_dir: str | Path, windows: tuple[int, ...] = (90, 180, 365)
) -> dict[str, Any]:
    """How well "churned" agrees with the generator's true churn, for segone's per-person
    lifecycle stage and for single global recency windows (a customer is churned after W days
    without an order), on the buyers segone knows."""
    truth = pq.read_table(Path(truth_dir) / "records.parquet").to_pandas()
    truth = truth[(truth.table == "orders") & ~truth.rejected]
    people = pq.read_table(Path(truth_dir) / "people.parquet").to_pandas()[["person_id", "churned"]]
    rc = wh.execute(wh.table("record_customers").filter(lambda t: t.record_table == "orders"))
    j = truth.merge(rc, left_on="key", right_on="record_key")
    # each person's main customer id: the one holding most of their orders
    main = j.groupby(["person_id", "customer_id"]).size().rename("n").reset_index()
    main = main.sort_values("n", ascending=False).drop_duplicates("person_id")
    prof = wh.execute(
        wh.table("profiles").select("customer_id", "recency_days", "lifecycle_stage", "p_alive")
    )
    df = main.merge(prof, on="customer_id").merge(people, on="person_id")
    true = df.churned.astype(bool).to_numpy()
    out: dict[str, Any] = {"buyers": len(df), "truly_churned": int(true.sum())}
    out["per_person_lifecycle"] = _prf((df.lifecycle_stage == "churned").to_numpy(), true)
    for w in windows:
        out[f"global_{w}d"] = _prf((df.recency_days > w).to_numpy(), true)
    # Ranking quality over every threshold at once: the ROC curve of recency is the set of all
    # global windows, so an AUC above recency's beats any single window one could have picked.
    out["auc_recency"] = float(roc_auc_score(true, df.recency_days.to_numpy()))
    pa = df.p_alive.to_numpy(dtype=float)
    out["auc_p_alive"] = (
        float(roc_auc_score(true, -np.nan_to_num(pa, nan=1.0))) if np.isfinite(pa).any() else None
    )
    return out

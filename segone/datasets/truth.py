"""Score what segone built against a generated store's ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from segone.store.base import Warehouse


def identity_scores(wh: Warehouse, truth_dir: str | Path) -> dict[str, Any]:
    """How well ``record_customers`` recovers the true people behind the records.

    ``split_rate``: share of true people whose records landed under more than one customer_id.
    ``mixed_rate``: share of customer_ids holding records of more than one true person.
    """
    truth = pq.read_table(Path(truth_dir) / "records.parquet").to_pandas()
    truth = truth[~truth.rejected]
    src = truth.source.fillna("")
    truth["record_key"] = truth.key.where(src == "", src + ":" + truth.key)
    truth = truth.rename(columns={"table": "record_table"})[
        ["record_table", "record_key", "person_id"]
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
    }

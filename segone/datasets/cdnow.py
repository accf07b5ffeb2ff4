"""The CDNOW purchase history (Fader & Hardie): 6,919 purchases of 2,357 customers, 1997-1998.

The file ships with segone (``data/CDNOW_sample.txt``, from the MIT-licensed ``lifetimes``
package; see ``data/CDNOW_LICENSE.txt``). Cite Fader, Hardie & Lee (2005), "Counting your
customers the easy way: an alternative to the Pareto/NBD model".
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv


def load_cdnow() -> pd.DataFrame:
    """One row per purchase: customer_id, date, cds (number of CDs), amount (US dollars)."""
    with resources.files("segone.datasets").joinpath("data/CDNOW_sample.txt").open("r") as f:
        df = pd.read_csv(
            f,
            sep=r"\s+",
            header=None,
            names=["master_id", "customer_id", "date", "cds", "amount"],
            dtype={"master_id": str, "customer_id": str, "date": str},
        )
    df["date"] = pd.to_datetime(df["date"], format="%Y%m%d")
    return df[["customer_id", "date", "cds", "amount"]]


def write_cdnow_orders(path: str | Path) -> int:
    """Write CDNOW as an orders file segone ingests (one order per purchase record).

    Purchases on the same day are kept as separate orders; models that follow the published
    analyses merge them per day themselves. Returns the number of orders written.
    """
    df = load_cdnow()
    seq = df.groupby(["customer_id", "date"]).cumcount() + 1
    out = pa.table(
        {
            "order_id": "CDNOW-"
            + df.customer_id
            + "-"
            + df.date.dt.strftime("%Y%m%d")
            + "-"
            + seq.astype(str),
            "customer_id": df.customer_id,
            "order_date": df.date.dt.strftime("%Y-%m-%d"),
            "amount": df.amount,
            "items": df.cds,
            "channel": ["web"] * len(df),
        }
    )
    pacsv.write_csv(out, Path(path))
    return out.num_rows

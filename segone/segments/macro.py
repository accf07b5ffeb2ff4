"""Macro segmentation baselines: the RFM grid and k-means clusters on behaviour.

These are the "segments" that segment-of-one is compared against: a few broad groups, each
person treated like the others in their group.
"""

from __future__ import annotations

import ibis
import numpy as np
import pyarrow as pa
from sklearn.cluster import KMeans
from sklearn.preprocessing import StandardScaler

from segone.store.base import Warehouse

# the usual names for cells of the recency x frequency grid (scores 1..5, 5 = best)
RFM_GRID = [
    ("champions", (4, 5), (4, 5)),
    ("loyal", (2, 5), (3, 5)),
    ("potential_loyalists", (3, 5), (1, 3)),
    ("at_risk", (1, 2), (3, 5)),
    ("hibernating", (1, 2), (1, 2)),
    ("need_attention", (1, 5), (1, 5)),
]

FEATURES = (
    "orders",
    "revenue",
    "recency_days",
    "page_views",
    "email_open_rate",
    "discount_order_share",
    "avg_sentiment",
)


def rfm_segment(p: ibis.Table) -> ibis.expr.types.StringValue:
    """The RFM-grid cell name of each profile (``non_buyer`` without orders)."""
    cases = [
        ((p.r_score.between(r[0], r[1])) & (p.f_score.between(f[0], f[1])), name)
        for name, r, f in RFM_GRID
    ]
    return ibis.cases((p.orders == 0, "non_buyer"), *cases, else_="need_attention")


def build_macro_segments(wh: Warehouse, k: int = 6, random_state: int = 0) -> dict[str, int]:
    """Write ``macro_segments`` (customer_id, rfm_segment, cluster) and return cluster sizes.

    k-means runs on standardised behaviour of buyers (log orders and revenue, recency, page
    views, e-mail open rate, discount share, sentiment; missing values as the mean).
    """
    p = wh.table("profiles")
    data = wh.to_arrow(p.select("customer_id", *FEATURES, rfm_segment=rfm_segment(p)))
    df = data.to_pandas()
    buyers = df.orders.fillna(0) > 0
    x = df.loc[buyers, list(FEATURES)].astype("float64")
    x["orders"] = np.log1p(x["orders"])
    x["revenue"] = np.log1p(x["revenue"].clip(lower=0))
    x = x.fillna(x.mean()).fillna(0.0)
    cluster = np.full(len(df), -1)
    if len(x) >= k:
        km = KMeans(n_clusters=k, n_init=10, random_state=random_state)
        cluster[buyers.to_numpy()] = km.fit_predict(StandardScaler().fit_transform(x))
    out = pa.table(
        {
            "customer_id": df.customer_id.astype(str),
            "rfm_segment": df.rfm_segment,
            "cluster": pa.array(cluster, pa.int64()),
        }
    )
    wh.replace("macro_segments", wh.stage("_segone_macro", out, append=False))
    wh.drop_staging("_segone_macro")
    assigned = cluster[cluster >= 0]
    sizes = np.bincount(assigned, minlength=k) if len(assigned) else np.zeros(0, dtype=np.int64)
    return {f"cluster_{i}": int(n) for i, n in enumerate(sizes)}

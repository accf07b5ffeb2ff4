"""The Open Bandit Dataset sample (ZOZOTOWN, uniform-random policy, "all" campaign): 10,000 rows.

The two files ship with segone, gzip-compressed but otherwise unchanged, from the Apache-2.0
``obp`` 0.4.1 package (``data/obd_random_all.csv.gz``, ``data/obd_item_context.csv.gz``; see
``data/OBD_LICENSE.txt``). Cite Saito, Aihara, Matsutani & Narita (2020), "Open Bandit Dataset
and Pipeline: Towards Realistic and Reproducible Off-Policy Evaluation", arXiv:2008.07146.

Each row of ``impressions`` is one item shown in one of three slots of a recommendation widget
(``position`` 1, 2, 3 = left, centre, right, as in the file) and whether it was clicked. The
logging policy drew every slot's item uniformly at random from the 80 items, so
``propensity_score`` is 1/80 everywhere. The four user features and the item features are
hashed categories (``item_feature_0`` is numeric); ``user-item_affinity_<k>`` counts the user's
past clicks on item ``k`` (almost always 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import pandas as pd

__all__ = ["OpenBanditData", "load_obd"]

_IMPRESSIONS = "data/obd_random_all.csv.gz"
_ITEMS = "data/obd_item_context.csv.gz"

USER_FEATURES: tuple[str, ...] = tuple(f"user_feature_{i}" for i in range(4))
ITEM_FEATURES: tuple[str, ...] = tuple(f"item_feature_{i}" for i in range(4))


@dataclass(frozen=True)
class OpenBanditData:
    """The logged impressions and the item catalogue of the Open Bandit Dataset sample."""

    #: One row per (impression, slot), in time order: ``timestamp`` (UTC), ``item_id`` (0..79),
    #: ``position`` (1..3), ``click`` (0/1), ``propensity_score``, the user features and the
    #: ``user-item_affinity_<k>`` columns.
    impressions: pd.DataFrame
    #: One row per item: ``item_id`` and ``item_feature_0`` (numeric) .. ``item_feature_3``.
    items: pd.DataFrame
    user_features: tuple[str, ...] = USER_FEATURES
    item_features: tuple[str, ...] = ITEM_FEATURES

    @property
    def n_actions(self) -> int:
        """Number of items (actions) the policy chooses from."""
        return len(self.items)

    @property
    def len_list(self) -> int:
        """Number of slots (positions) in the widget."""
        return int(self.impressions["position"].max())

    @property
    def affinity_columns(self) -> list[str]:
        """The user-item affinity columns, item 0 first."""
        return [f"user-item_affinity_{k}" for k in range(self.n_actions)]


def _read(name: str, dtype: dict[str, type]) -> pd.DataFrame:
    with resources.files("segone.datasets").joinpath(name).open("rb") as f:
        df = pd.read_csv(f, compression="gzip", index_col=0, dtype=dtype)
    return df.reset_index(drop=True)


def load_obd() -> OpenBanditData:
    """Load the shipped Open Bandit Dataset sample (no download)."""
    impressions = _read(_IMPRESSIONS, dict.fromkeys(USER_FEATURES, str))
    impressions["timestamp"] = pd.to_datetime(impressions["timestamp"], utc=True)
    items = _read(_ITEMS, dict.fromkeys(ITEM_FEATURES[1:], str))
    items = items.sort_values("item_id", ignore_index=True)
    return OpenBanditData(impressions=impressions, items=items)

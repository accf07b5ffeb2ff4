"""JSON Lines in the warehouse: each line staged as text, parsed and flattened by the engine.

Parsing millions of messages in Python is the slow part of ingestion; the engine's JSON
functions do it far faster, and a line that is not JSON becomes a quarantined row, not an error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir

from segone.exprs import lit
from segone.ingest import segment
from segone.ingest.kinds import KindSpec
from segone.ingest.mapping import resolve
from segone.ingest.readers import EXTRA_JSON, LINE

TEXT = "_json"
PRE_CODE = "_pre_code"
PRE_REASON = "_pre_reason"
STEP1 = "_segone_json1"


@ibis.udf.scalar.builtin(name="json_extract_string")
def json_extract_strings(x: dt.JSON, paths: dt.Array(dt.string)) -> dt.Array(dt.string):  # type: ignore[valid-type]
    """Texts at many paths, parsing the document once."""


@ibis.udf.scalar.builtin(name="json_extract")
def json_extract_many(x: dt.JSON, paths: dt.Array(dt.string)) -> dt.Array(dt.JSON):  # type: ignore[valid-type]
    """JSON values at many paths, parsing the document once."""


@ibis.udf.scalar.builtin
def strlen(x: str) -> dt.int64:
    """Length in bytes (UTF-8) of a text."""


@ibis.udf.scalar.builtin
def json_keys(x: dt.JSON) -> dt.Array(dt.string):  # type: ignore[valid-type]
    """Top-level keys of a JSON object."""


@ibis.udf.scalar.builtin
def json_type(x: dt.JSON) -> str:  # type: ignore[empty-body]
    """OBJECT, ARRAY, VARCHAR, BIGINT, … (engine built-in)."""


def _path(*keys: str) -> str:
    return "$" + "".join('."' + k.replace('"', '\\"') + '"' for k in keys)


def distinct_keys(staged: ibis.Table) -> ibis.Table:
    """Every top-level key used by any line (one small query decides the column mapping)."""
    j = staged[TEXT].try_cast("json")
    keys = staged.select(k=json_keys(j).unnest())
    return keys.distinct()


def flatten(
    staged: ibis.Table,
    spec: KindSpec,
    keys: list[str],
    mapping: Mapping[str, str],
    max_message_bytes: int | None,
    materialize: Callable[[str, ibis.Table], ibis.Table],
) -> tuple[ibis.Table, set[str]]:
    """Canonical text columns, ``_extra`` and a pre-check of each line; returns fields present.

    Two steps, each computed once: parse every line and extract all paths in one call, then
    unpack the lists (engines would otherwise re-run the extraction once per column).
    """
    text = staged[TEXT]
    j0 = text.try_cast("json")
    # one parse per line: extract every path at once, then pick list elements
    wanted: dict[str, list[str]] = {}
    if spec.name == "events":
        consumed = set(segment.CONSUMED)
        wanted = {name: [_path(k) for k in alts] for name, alts in segment.KEYS.items()}
        wanted["traits"] = [_path("traits"), _path("context", "traits")]
        present = set(wanted)
    else:
        cmap = resolve(spec, keys, {k: v for k, v in mapping.items() if v in keys})
        consumed = set(cmap.canonical.values())
        wanted = {name: [_path(key)] for name, key in cmap.canonical.items()}
        present = set(cmap.canonical)
    paths = [p for alts in wanted.values() for p in alts]
    extra_keys = sorted(k for k in keys if k not in consumed)
    step1: dict[str, ir.Value] = {"_jtype": json_type(j0)}
    if paths:
        step1["_got"] = json_extract_strings(j0, ibis.literal(paths, type="array<string>"))
    if extra_keys:
        step1["_vals"] = json_extract_many(
            j0, ibis.literal([_path(k) for k in extra_keys], type="array<string>")
        )
    first = materialize(STEP1, staged.mutate(**step1))
    cols: dict[str, ir.Value] = {}
    if paths:
        got = first["_got"]
        i = 0
        for name, alts in wanted.items():
            cols[name] = (
                ibis.coalesce(*[got[i + k] for k in range(len(alts))]) if len(alts) > 1 else got[i]
            )
            i += len(alts)
    if "type" in cols:
        cols["type"] = cols["type"].lower()
    if extra_keys:
        vals = first["_vals"]
        values = {k: vals[n] for n, k in enumerate(extra_keys)}
        cols[EXTRA_JSON] = ibis.ifelse(
            ibis.or_(*[v.notnull() for v in values.values()]),
            ibis.struct(values).cast("json").cast("string"),
            ibis.null("string"),
        )
    else:
        cols[EXTRA_JSON] = ibis.null("string")
    text = first[TEXT]
    size = strlen(text)  # bytes: Segment's limit is 32 KB of UTF-8, not 32K characters
    pre = [
        (
            first["_jtype"].isnull(),
            "malformed_json",
            lit("not valid JSON (the line is kept in the record column)"),
        ),
        (
            first["_jtype"] != "OBJECT",
            "not_an_object",
            lit("a record must be a JSON object, not ") + first["_jtype"].lower(),
        ),
    ]
    if max_message_bytes is not None:
        pre.insert(
            0,
            (
                size > max_message_bytes,
                "message_too_large",
                lit("message is ")
                + size.cast("string")
                + lit(f" bytes, over the {max_message_bytes // 1024} KB limit per message"),
            ),
        )
    code = ibis.cases(*[(c, lit(p)) for c, p, _ in pre], else_=ibis.null("string"))
    reason = ibis.cases(*[(c, m) for c, _, m in pre], else_=ibis.null("string"))
    out = first.select(
        **cols, **{LINE: first[LINE], PRE_CODE: code, PRE_REASON: reason, TEXT: text}
    )
    return out, present

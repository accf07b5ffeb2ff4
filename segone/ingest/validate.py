"""Row validation as Ibis expressions: parse every canonical field of a staged chunk to its type
and say, per row, what is wrong with it. Runs in the warehouse for all rows at once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir

from segone.exprs import lit
from segone.ingest import formats
from segone.ingest.formats import Detected
from segone.ingest.jsonflat import PRE_CODE, PRE_REASON, json_type
from segone.ingest.kinds import Field, KindSpec
from segone.ingest.readers import EXTRA_JSON, JSON_TEXT, LINE
from segone.schema import TS

TRUE = ("true", "t", "yes", "y", "1", "on")
FALSE = ("false", "f", "no", "n", "0", "off")
PROBLEMS = "_problems"
REASON = "_reason"
DROPPED = "_dropped"  # problems of optional fields whose values were dropped (the row loads)
DROPPED_REASON = "_dropped_reason"
RECORD = "_record"
TEXT_PREFIX = "_s_"


@dataclass
class Check:
    cond: ir.BooleanValue
    code: str
    message: ir.StringValue


def _shown(s: ir.StringValue) -> ir.StringValue:
    return lit("'") + s.substr(0, 40) + lit("'")


def clean(col: ir.Value) -> ir.StringValue:
    """Any staged column as trimmed text, empty text as null."""
    t = col.type()
    if t.is_nested():
        col = col.cast("json")
    s = col if t.is_string() else col.cast("string")
    s = s.strip()
    return s.nullif("")


def parse_value(
    f: Field, s: ir.StringValue, *, date_order: str | None = None, decimal: str = "."
) -> ir.Value:
    """The typed value of field ``f`` read from text ``s`` (null when it cannot be read).

    ``date_order`` (DMY/MDY) says how to read slash dates, ``decimal`` the decimal mark; both
    are decided per file (see :mod:`segone.ingest.formats`)."""
    if f.kind == "string":
        return s
    if f.kind == "enum":
        return s.lower()
    if f.kind in ("int", "float"):
        num = formats.number_value(s, decimal)
        bad = num.isnull() | num.isnan() | num.isinf()
        if f.kind == "int":
            return ibis.ifelse(bad | (num != num.floor()), ibis.null("float64"), num).cast("int64")
        return ibis.ifelse(bad, ibis.null("float64"), num)
    if f.kind == "timestamp":
        as_num = s.try_cast("float64")
        return ibis.cases(
            # fast path: ISO text, which every rewrite below leaves as it is
            (s.re_search(formats.ISO_DATETIME), s.try_cast(TS)),
            (
                s.re_search(r"^\d{9,10}(\.\d+)?$"),
                (as_num * 1_000).cast("int64").as_timestamp("ms").cast(TS),
            ),
            (s.re_search(r"^\d{12,13}$"), as_num.cast("int64").as_timestamp("ms").cast(TS)),
            else_=formats.datetime_text(s, date_order).try_cast(TS),
        )
    if f.kind == "date":
        return ibis.ifelse(
            s.re_search(formats.ISO_DATETIME),
            s.try_cast("date"),
            formats.datetime_text(s, date_order).try_cast("date"),
        )
    if f.kind == "bool":
        low = s.lower()
        return ibis.cases(
            (low.isin(list(TRUE)), True), (low.isin(list(FALSE)), False), else_=ibis.null("boolean")
        )
    if f.kind == "json":
        return s.try_cast("json")
    raise ValueError(f"unknown field kind {f.kind}")  # pragma: no cover - specs are static


def field_checks(
    f: Field,
    s: ir.StringValue,
    value: ir.Value,
    max_chars: int,
    *,
    date_order: str | None = None,
    decimal: str = ".",
) -> list[Check]:
    """What must hold of field ``f`` given its text ``s`` and parsed ``value``."""
    checks: list[Check] = []
    # how slash dates and decimals were read, said when a value fails to read that way
    if date_order:
        as_read = lit(f" (the file's dates read as {formats.SHOWN[date_order]})")
    else:
        as_read = ibis.ifelse(
            s.re_search(formats.SLASH_DATE),
            lit(": day/month order unknown, pass --date-format DMY or MDY"),
            lit(""),
        )
    name = f.name
    prefix = lit(f"{name}: ")
    if f.kind in ("string", "enum", "json"):
        n = s.length()
        checks.append(
            Check(
                n > max_chars,
                f"too_long({name})",
                prefix + n.cast("string") + lit(f" characters, over the limit of {max_chars}"),
            )
        )
    if f.kind == "enum":
        checks.append(
            Check(
                value.notnull() & ~value.isin(list(f.choices)),
                f"invalid_choice({name})",
                prefix + _shown(s) + lit(f" is not one of {', '.join(f.choices)}"),
            )
        )
    elif f.kind in ("int", "float"):
        what = "a whole number" if f.kind == "int" else "a number"
        if decimal == ",":
            what += " (the file writes decimals with a comma)"
        checks.append(
            Check(
                s.notnull() & value.isnull(),
                f"not_a_number({name})",
                prefix + _shown(s) + lit(f" is not {what}"),
            )
        )
        if f.minimum is not None:
            checks.append(
                Check(
                    value < f.minimum,
                    f"below_minimum({name})",
                    prefix + _shown(s) + lit(f" is below the minimum {f.minimum:g}"),
                )
            )
        if f.maximum is not None:
            checks.append(
                Check(
                    value > f.maximum,
                    f"above_maximum({name})",
                    prefix + _shown(s) + lit(f" is above the maximum {f.maximum:g}"),
                )
            )
    elif f.kind == "timestamp":
        checks.append(
            Check(
                s.notnull() & value.isnull(),
                f"invalid_timestamp({name})",
                lit(f"{name}: cannot read ") + _shown(s) + lit(" as a date and time") + as_read,
            )
        )
        year = value.year()
        checks.append(
            Check(
                (year < 1900) | (year > 2200),
                f"out_of_range({name})",
                prefix + _shown(s) + lit(" is outside 1900-2200"),
            )
        )
    elif f.kind == "date":
        checks.append(
            Check(
                s.notnull() & value.isnull(),
                f"invalid_date({name})",
                lit(f"{name}: cannot read ") + _shown(s) + lit(" as a date") + as_read,
            )
        )
        checks.append(
            Check(
                (value.year() < 1900) | (value > ibis.today()),
                f"out_of_range({name})",
                prefix + _shown(s) + lit(" is before 1900 or in the future"),
            )
        )
    elif f.kind == "bool":
        checks.append(
            Check(
                s.notnull() & value.isnull(),
                f"not_a_boolean({name})",
                prefix + _shown(s) + lit(" is not true/false/yes/no/1/0"),
            )
        )
    elif f.kind == "json":
        checks.append(
            Check(
                s.notnull() & (value.isnull() | (json_type(value) != "OBJECT")),
                f"not_a_json_object({name})",
                prefix + _shown(s) + lit(" is not a JSON object"),
            )
        )
    if f.required:
        checks.append(Check(s.isnull(), f"missing({name})", lit(f"{name}: missing")))
    return checks


def kind_checks(spec: KindSpec, v: Mapping[str, ir.Value], present: set[str]) -> list[Check]:
    """Rules across fields of one row."""
    checks: list[Check] = []
    if spec.any_of:
        none = ibis.and_(*[v[f].isnull() for f in spec.any_of])
        checks.append(
            Check(
                none,
                "missing_identity(" + "|".join(spec.any_of) + ")",
                lit(f"none of {', '.join(spec.any_of)}: the row must say who it is about"),
            )
        )
    if spec.name == "events":
        typ = v["type"]
        for t, need in [
            ("track", ["event"]),
            ("alias", ["previous_id", "user_id"]),
            ("group", ["group_id"]),
        ]:
            for n in need:
                checks.append(
                    Check(
                        (typ == t) & v[n].isnull(),
                        f"missing({n})",
                        lit(f"{n}: missing, a {t} call needs it"),
                    )
                )
    if spec.name == "orders":
        if "returned_quantity" in present and "quantity" in present:
            checks.append(
                Check(
                    v["returned_quantity"] > v["quantity"],
                    "returned_exceeds_quantity",
                    lit("returned_quantity: more units returned than bought"),
                )
            )
        if set(spec.line_fields) & present and "product_id" in present:
            checks.append(
                Check(
                    v["product_id"].isnull(),
                    "missing(product_id)",
                    lit("product_id: missing on an order line"),
                )
            )
    return checks


def parse_stage(
    staged: ibis.Table,
    spec: KindSpec,
    extra_columns: Mapping[str, str],
    detected: Detected | None = None,
) -> ibis.Table:
    """Step 1: every field's text (``_s_<field>``) and typed value."""
    detected = detected or Detected()
    cols: dict[str, ir.Value] = {}
    month_days: list[tuple[ir.BooleanValue, dict[str, ir.Value]]] = []
    for f in spec.fields:
        if f.name in staged.columns:
            s = clean(staged[f.name])
            value = parse_value(
                f, s, date_order=detected.date_orders.get(f.name), decimal=detected.decimal
            )
            if f.kind == "date":
                # a date without a year (Mailchimp's MM/DD birthday) is not a date: its month and
                # day go to extra, no year is made up, and the field is left empty, not rejected
                order = detected.month_day.get(f.name) or detected.date_orders.get(f.name, "MDY")
                is_md, parts = _month_day(f, s, order)
                month_days.append((is_md, parts))
                s = ibis.ifelse(is_md, ibis.null("string"), s)
                value = ibis.ifelse(is_md, ibis.null("date"), value)
            cols[TEXT_PREFIX + f.name] = s
            cols[f.name] = value
        else:
            cols[f.name] = ibis.null(_target_type(f))
    if EXTRA_JSON in staged.columns:
        extra: ir.Value = staged[EXTRA_JSON].try_cast("json")
    elif extra_columns:
        extra = ibis.struct(
            {
                orig: staged[col].cast("json")
                if staged[col].type().is_nested()
                else clean(staged[col])
                for col, orig in extra_columns.items()
            }
        ).cast("json")
    else:
        extra = ibis.null("json")
    for is_md, parts in month_days:
        base = ibis.coalesce(extra, ibis.literal("{}", "json")).cast("json")
        added = json_merge_patch(base, ibis.struct(parts).cast("json"))
        extra = ibis.ifelse(is_md, added, extra)
    cols["extra"] = extra
    cols[LINE] = staged[LINE]
    for c in (PRE_CODE, PRE_REASON):
        if c in staged.columns:
            cols[c] = staged[c]
    return staged.select(**cols)


@ibis.udf.scalar.builtin
def json_merge_patch(a: dt.JSON, b: dt.JSON) -> dt.JSON:
    """``a`` with the keys of ``b`` added (engine built-in, RFC 7396)."""


def _month_day(
    f: Field, s: ir.StringValue, order: str
) -> tuple[ir.BooleanValue, dict[str, ir.Value]]:
    """Whether ``s`` is a real month and day with no year (``12/25``, Feb 29 allowed), and the
    two as ``<field>_month`` / ``<field>_day`` (``birth_month``, ``birth_day``) for extra."""
    a = s.re_extract(formats.MONTH_DAY, 1).try_cast("int64")
    b = s.re_extract(formats.MONTH_DAY, 2).try_cast("int64")
    month, day = (a, b) if order == "MDY" else (b, a)
    # a real day of that month, in a leap year so that 02/29 is one
    mm, dd = month.cast("string").lpad(2, "0"), day.cast("string").lpad(2, "0")
    as_date = (lit("2000-") + mm + lit("-") + dd).try_cast("date")
    ok = s.re_search(formats.MONTH_DAY) & as_date.notnull()
    stem = f.name.removesuffix("_date")
    return ok.fill_null(False), {f"{stem}_month": month, f"{stem}_day": day}


def validate(
    parsed: ibis.Table,
    spec: KindSpec,
    *,
    max_chars: int,
    present: set[str],
    strict: bool = False,
    detected: Detected | None = None,
) -> ibis.Table:
    """Step 2: typed canonical columns plus ``_line``, ``extra``, ``_problems`` and ``_reason``.

    ``parsed`` comes from :func:`parse_stage`. ``_problems`` is null for a valid row. Problems
    of optional fields (unless ``strict``) null the value and go to ``_dropped`` /
    ``_dropped_reason`` instead, and the row stays valid.
    """
    detected = detected or Detected()
    checks: list[Check] = []
    soft: list[Check] = []
    values = {f.name: parsed[f.name] for f in spec.fields}
    for f in spec.fields:
        if TEXT_PREFIX + f.name in parsed.columns:
            found = field_checks(
                f,
                parsed[TEXT_PREFIX + f.name],
                parsed[f.name],
                max_chars,
                date_order=detected.date_orders.get(f.name),
                decimal=detected.decimal,
            )
            if f.optional and not strict:
                # the row loads without this value; the problem is recorded apart. An oversize
                # value still rejects its row: it is more often a broken line than a bad value.
                checks.extend(c for c in found if c.code.startswith("too_long"))
                found = [c for c in found if not c.code.startswith("too_long")]
                if found:
                    bad = ibis.or_(*[c.cond.fill_null(False) for c in found])
                    values[f.name] = ibis.ifelse(
                        bad, ibis.null(values[f.name].type()), values[f.name]
                    )
                soft.extend(found)
            else:
                checks.extend(found)
        elif f.required:
            checks.append(
                Check(ibis.literal(True), f"missing({f.name})", lit(f"{f.name}: missing"))
            )
    checks.extend(kind_checks(spec, values, present))
    extra_len = parsed.extra.cast("string").length()
    checks.append(
        Check(
            extra_len > max_chars,
            "too_long(extra)",
            lit("extra columns: ")
            + extra_len.cast("string")
            + lit(f" characters together, over the limit of {max_chars}"),
        )
    )
    problems, reasons = _joined(checks)
    if PRE_CODE in parsed.columns:  # a line that is not a JSON object has only that problem
        problems = parsed[PRE_CODE].fill_null(problems)
        reasons = parsed[PRE_REASON].fill_null(reasons)
    dropped, dropped_reasons = _joined(
        [
            Check(c.cond, f"dropped_field:{c.code}", lit("value dropped, row kept: ") + c.message)
            for c in soft
        ]
    )
    return parsed.select(
        **values,
        extra=parsed.extra,
        **{
            LINE: parsed[LINE],
            PROBLEMS: problems,
            REASON: reasons,
            DROPPED: dropped,
            DROPPED_REASON: dropped_reasons,
        },
    )


def _joined(checks: list[Check]) -> tuple[ir.StringValue, ir.StringValue]:
    """The codes and the messages of the checks that fail, each joined with '; ' (null: none)."""
    if not checks:
        return ibis.null("string"), ibis.null("string")
    codes = lit("; ").join([ibis.ifelse(c.cond, lit(c.code), ibis.null("string")) for c in checks])
    texts = lit("; ").join([ibis.ifelse(c.cond, c.message, ibis.null("string")) for c in checks])
    return codes.nullif(""), texts.nullif("")


def record_json(staged: ibis.Table, extra_columns: Mapping[str, str]) -> ir.StringValue:
    """The staged row as JSON text, with the user's own column names, for the quarantine.

    Only computed for rejected rows (it costs as much as the rest of validation)."""
    if JSON_TEXT in staged.columns:
        return staged[JSON_TEXT].substr(0, 20_000)
    fields = {}
    for c in staged.columns:
        if c in (LINE, PRE_CODE, PRE_REASON, JSON_TEXT):
            continue
        fields[extra_columns.get(c, c)] = staged[c]
    return ibis.struct(fields).cast("json").cast("string")


def _target_type(f: Field) -> dt.DataType:
    return {
        "string": dt.string,
        "enum": dt.string,
        "int": dt.int64,
        "float": dt.float64,
        "timestamp": TS,
        "date": dt.date,
        "bool": dt.boolean,
        "json": dt.json,
    }[f.kind]

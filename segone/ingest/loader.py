"""Load one file into the warehouse: stage, validate, quarantine, de-duplicate, insert, all in
one transaction. A crash or an error part-way leaves the warehouse as it was."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
import pyarrow as pa

from segone.config import IngestSettings
from segone.exceptions import ConfigError, FileFormatError, IngestError, StoreError
from segone.exprs import lit
from segone.identity.erase import erased_lines
from segone.identity.graph import IdentitySettings
from segone.ingest import jsonflat, segment
from segone.ingest.kinds import TARGET_TABLE, KindSpec, get_kind
from segone.ingest.mapping import Const, MapValue, RowId
from segone.ingest.presets import RowRules, all_presets, detect_preset, get_preset
from segone.ingest.readers import JSON_TEXT, LINE, Chunk, Reject, open_reader, peek_header
from segone.ingest.validate import (
    DROPPED,
    DROPPED_REASON,
    PROBLEMS,
    REASON,
    RECORD,
    parse_stage,
    record_json,
    validate,
)
from segone.schema import TABLES, TS
from segone.store.base import Warehouse

STAGE = "_segone_stage"
CHECKED = "_segone_checked"
FLAT = "_segone_flat"
PARSED = "_segone_parsed"
JSON1 = jsonflat.STEP1
RECORDS = "_segone_records"

ProgressHook = Callable[[str, int, int], None]  # (phase, done, total)
DRY_RUN_ROWS = 10_000  # rows a dry run reads and validates


@dataclass
class LoadResult:
    """What one ingest did. ``problems`` counts rejected rows per problem code."""

    load_id: str
    kind: str
    path: str
    rows_read: int = 0
    loaded: int = 0
    lines_loaded: int = 0
    duplicates: int = 0
    rejected: int = 0
    refused_erased: int = 0
    fields_dropped: int = 0
    problems: dict[str, int] = field(default_factory=dict)
    preset: str | None = None
    mapping: dict[str, str] = field(default_factory=dict)  # canonical field -> what feeds it
    extra_columns: list[str] = field(default_factory=list)  # kept under `extra`, as named
    dry_run: bool = False
    examples: list[tuple[int, str]] = field(default_factory=list)  # (line, reason), dry run
    # how the file was read: encoding, delimiter, date orders, decimal mark (one line each)
    formats: list[str] = field(default_factory=list)

    @property
    def loaded_nothing(self) -> bool:
        """True when the file had no rows, or every row was rejected (not merely known)."""
        if self.dry_run:
            return self.rows_read == self.rejected
        return self.loaded == 0 and self.duplicates == 0 and self.refused_erased == 0

    def summary(self) -> str:
        what = f"{self.loaded} {self.kind}"
        if self.kind == "orders":
            what += f" ({self.lines_loaded} lines)"
        out = (
            f"{Path(self.path).name}: read {self.rows_read}, loaded {what}, "
            f"skipped {self.duplicates} already loaded, rejected {self.rejected}"
        )
        if self.refused_erased:
            out += f", refused {self.refused_erased} of erased people"
        if self.fields_dropped:
            out += f", dropped {self.fields_dropped} bad optional field value(s)"
        if self.dry_run:
            out = (
                f"{Path(self.path).name} (dry run, first {self.rows_read} rows): "
                f"{self.rows_read - self.rejected} would load, {self.rejected} would be "
                f"rejected, {self.fields_dropped} field value(s) would be dropped; nothing written"
            )
        return out


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@ibis.udf.scalar.builtin
def epoch_us(x: dt.Timestamp(timezone="UTC")) -> dt.int64:  # type: ignore[valid-type]
    """Microseconds since the epoch of an instant (engine built-in)."""


@ibis.udf.scalar.builtin
def make_timestamp(x: dt.int64) -> dt.timestamp:
    """The naive timestamp ``x`` microseconds after the epoch (engine built-in)."""


def _text(v: ir.Value) -> ir.StringValue:
    """``v`` as text, as the engine casts it (for content hashes, which must not change).

    An instant renders as in UTC (the session's zone while a load hashes): the same text as the
    cast, ``2024-05-05 18:34:00.5+00``, without the engine's time-zone library, which makes the
    cast several times slower than the rest of the hash."""
    t = v.type()
    if t.is_timestamp() and t.timezone is not None:
        return make_timestamp(epoch_us(v)).cast("string") + lit("+00")
    return v.cast("string")


def _hash(values: list[ir.Value]) -> ir.StringValue:
    parts = [_text(v).fill_null("~null~") for v in values]
    return lit("|~|").join(parts).hexdigest("md5")


#: ingest_file's keyword options, passed on unchanged when a load goes through a relay
_OPTIONS = (
    "settings",
    "fmt",
    "mapping",
    "source",
    "timezone",
    "progress",
    "identity",
    "preset",
    "value_maps",
    "dry_run",
    "encoding",
    "delimiter",
    "columns",
    "date_format",
)


def ingest_file(
    wh: Warehouse,
    kind: str,
    path: str | Path,
    *,
    settings: IngestSettings | None = None,
    fmt: str | None = None,
    mapping: Mapping[str, str] | None = None,
    source: str | None = None,
    timezone: str | None = None,
    progress: ProgressHook | None = None,
    identity: IdentitySettings | None = None,
    preset: str | None = None,
    value_maps: Mapping[str, Mapping[str, str]] | None = None,
    dry_run: bool = False,
    encoding: str | None = None,
    delimiter: str | None = None,
    columns: list[str] | str | None = None,
    date_format: str | None = None,
) -> LoadResult:
    """Ingest ``path`` as ``kind``. Bad rows go to ``quarantine``; the rest is loaded once.

    The file's layout is recognised from its header when it is a known export (``preset``
    forces one, see :mod:`segone.ingest.presets`). ``dry_run`` reads the first
    ``DRY_RUN_ROWS`` rows, validates them and returns what a load would do, writing nothing.
    """
    spec = get_kind(kind)
    settings = settings or IngestSettings()
    identity = identity or IdentitySettings()
    path = Path(path).resolve()  # quarantine and loads name files by absolute path
    if not path.is_file():
        raise IngestError(f"no such file: {path}")
    if not wh.native_ingest:  # e.g. Spark: the same load, in a local DuckDB, then appended
        from segone.ingest.relay import ingest_through_duckdb

        options = {k: v for k, v in locals().items() if k in _OPTIONS}
        return ingest_through_duckdb(wh, kind, path, ingest_file, **options)
    source = source or path.name.split(".")[0]
    presets = all_presets(settings.presets)
    header = (
        None
        if columns is not None
        else peek_header(path, fmt, spec, encoding=encoding, delimiter=delimiter)
    )
    chosen = (
        get_preset(preset, kind, presets)
        if preset
        else detect_preset(kind, header, presets)
        if header
        else None
    )
    layout: dict[str, MapValue] = {}
    fallbacks: dict[str, tuple[str, ...]] = {}
    if chosen is not None:
        layout, fallbacks = chosen.mapping(chosen.header or header or [])
    # a mapping for this source wins over the one for the kind; --map options win over both,
    # and all of them over a preset's
    configured = settings.mapping.get(source, settings.mapping.get(kind, {}))
    given: dict[str, MapValue] = {**layout, **configured, **(mapping or {})}
    fallbacks = {f: c for f, c in fallbacks.items() if layout.get(f) == given.get(f)}
    tz = timezone or settings.timezone
    size = path.stat().st_size
    load_id = f"{kind}-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    result = LoadResult(load_id, kind, str(path), preset=chosen.name if chosen else None)
    result.dry_run = dry_run
    started = datetime.now(UTC)
    try:
        if dry_run:  # nothing is recorded: the file need only be readable, not hashed
            with open(path, "rb") as fh:
                fh.read(1)
            sha = ""
        else:
            sha = file_sha256(path)
    except OSError as exc:
        raise FileFormatError(f"{path.name}: cannot read the file: {exc.strerror or exc}") from None
    chunk_rows = min(settings.chunk_rows, DRY_RUN_ROWS) if dry_run else settings.chunk_rows

    def on_bytes(n: int) -> None:
        if progress:
            progress("read", n, size)

    reader = open_reader(
        path,
        spec,
        fmt=fmt,
        mapping=given,
        chunk_rows=chunk_rows,
        progress=on_bytes,
        encoding=encoding,
        delimiter=delimiter,
        columns=columns if columns is not None or chosen is None else (list(chosen.header) or None),
        date_format=date_format,
    )
    result.mapping = dict(reader.column_map)
    result.formats = reader.detected.describe()
    result.extra_columns = list(reader.extra_columns.values())
    rules = RowRules.build(spec, chosen, fallbacks, reader.extra_columns, value_maps)
    for f in fallbacks:
        if f in result.mapping:
            result.mapping[f] += " (else " + ", else ".join(fallbacks[f]) + ")"
    for f, v in given.items():
        if isinstance(v, Const):
            result.mapping[f] = f"always {v.value!r}"
        elif isinstance(v, RowId):
            result.mapping[f] = "derived from each row"
    if rules.items is not None and rules.item_columns:
        cells = ", ".join(reader.extra_columns.get(c, c) for c in rules.item_columns[:3])
        for f in rules.items.line_fields():
            result.mapping[f] = f"unpacked from each item in {cells}" + (
                ", …" if len(rules.item_columns) > 3 else ""
            )
    for f, pairs in rules.nest.items():
        names = ", ".join(k for k, _ in pairs[:4]) + (", …" if len(pairs) > 4 else "")
        result.mapping[f] = f"{len(pairs)} columns gathered ({names})"
    chunks = rules.apply_all(reader.chunks) if rules.active else reader.chunks
    generated = {f for f, v in given.items() if isinstance(v, Const | RowId)}
    rejects: list[Reject] = []
    wh.ensure_tables()
    # the load's own memory cap: the engine spills staged slices to disk beyond it, so a file of
    # any size loads in bounded memory (restored below, for the builds that share the handle)
    try:
        memory_before = wh.limit_memory(settings.memory_limit)
    except StoreError:
        raise ConfigError(
            f"ingest.memory_limit {settings.memory_limit!r} is not a size (use e.g. 1536MB or 2GB)"
        ) from None
    try:
        wh.set_timezone(tz)
    except StoreError:
        wh.limit_memory(memory_before)
        raise ConfigError(
            f"unknown time zone {tz!r} (use an IANA name such as Europe/Paris)"
        ) from None
    try:
        # Staging and validation work on temporary tables only, one slice of the file at a
        # time (so temporary space stays bounded); nothing the user can see changes until the
        # single transaction below commits every insert of this load together.
        fmt_seen = reader.fmt
        present_all: set[str] = set()
        checked: ibis.Table | None = None
        records: ibis.Table | None = None
        slice_rows = DRY_RUN_ROWS if dry_run else settings.chunk_rows * 5
        for staged in _staged_slices(wh, chunks, slice_rows, rejects):
            if progress:
                progress("validate", 0, 1)
            present = set(reader.column_map) | generated
            if JSON_TEXT in staged.columns:  # JSON Lines: the engine parses and flattens
                keys = [str(k) for k in wh.execute(jsonflat.distinct_keys(staged))["k"].dropna()]
                flat, present = jsonflat.flatten(
                    staged,
                    spec,
                    keys,
                    {k: v for k, v in given.items() if isinstance(v, str)},
                    segment.MAX_MESSAGE_BYTES if kind == "events" else None,
                    wh.materialize,
                )
                # not written: the checks below read the flattened columns as they are made
                staged = flat
            elif fmt_seen == "json":  # a field is present if any record has it
                nonnull = wh.to_arrow(
                    staged.aggregate(**{f: staged[f].count() for f in present})
                ).to_pylist()[0]
                present = {f for f, n in nonnull.items() if n}
            present_all |= present
            # parsing and checking in one pass over the slice (the engine shares the parsed
            # values between the checks), written once; the slice's rows are then told apart
            # by their line numbers, which grow through the file from slice to slice
            part_expr = validate(
                parse_stage(staged, spec, reader.extra_columns, reader.detected),
                spec,
                max_chars=settings.max_field_chars,
                present=present,
                strict=settings.strict,
                detected=reader.detected,
            )
            if checked is None:
                checked = part = wh.materialize(CHECKED, part_expr)
            else:
                first_line = wh.execute(staged[LINE].min())
                checked = wh.stage_expr(CHECKED, part_expr, append=True)
                if first_line is None or first_line != first_line:  # no rows (null, NaN)
                    part = checked.limit(0)
                else:
                    part = checked.filter(checked[LINE] >= int(first_line))
            bad = part[PROBLEMS].notnull()
            if kind == "orders":  # every line of an order that may be held back
                bad_ids = part.filter(bad & part.order_id.notnull()).select("order_id")
                known = wh.table("orders").select("order_id")
                bad = (
                    bad | part.order_id.isin(bad_ids.order_id) | part.order_id.isin(known.order_id)
                )
            bad_lines = part.filter(bad | part[DROPPED].notnull()).select(LINE)
            recs = staged.semi_join(bad_lines, LINE).select(
                LINE, **{RECORD: record_json(staged, reader.extra_columns)}
            )
            if rules.items is not None:  # the item rows of one file row share its line
                recs = recs.distinct(on=LINE, keep="first")
            records = wh.stage_expr(RECORDS, recs, append=records is not None)
            if dry_run:
                break
        assert checked is not None and records is not None
        present = present_all
        # values are parsed: from here on timestamps render (and hash) in UTC, whatever the zone
        wh.set_timezone("UTC")
        # rows of the file: the item rows a packed row was unpacked into count once
        # (one query, which also says whether any row has a problem: the quarantine steps below
        # are skipped, not run on nothing, when none has)
        tally = wh.to_arrow(
            checked.aggregate(
                _read=checked[LINE].nunique() if rules.items else checked.count(),
                _bad=checked[PROBLEMS].count(),
                _dropped=checked[DROPPED].count(),
            )
        ).to_pylist()[0]
        any_bad, any_dropped = bool(tally["_bad"]), bool(tally["_dropped"])
        result.rows_read = int(tally["_read"]) + len(rejects)
        if dry_run:
            _dry_run_report(wh, result, rejects)
            return result
        if progress:
            progress("load", 0, 1)
        with wh.transaction():
            now = ibis.literal(datetime.now(UTC), type=TS)
            ctx = _Ctx(
                wh, spec, result, load_id, str(path), source, now, settings.currency, records
            )
            ctx.quarantine_rejects(rejects)
            # records of erased people are neither loaded nor quarantined (both would keep them);
            # hashing every identifier of the file costs as much as validating it, so it is
            # skipped when nobody has been erased
            kept = checked
            if wh.count("erased_identifiers"):
                gone = wh.materialize(
                    "_segone_gone",
                    erased_lines(wh, kind, checked, LINE, identity.default_country_code),
                )
                result.refused_erased = wh.count("_segone_gone")
                if result.refused_erased:
                    kept = checked.anti_join(gone, LINE)
            if any_bad:
                ctx.quarantine(kept.filter(kept[PROBLEMS].notnull()))
            valid = kept.filter(kept[PROBLEMS].isnull()) if any_bad else kept
            if any_dropped:  # fields dropped from rows that load are recorded too
                ctx.quarantine(
                    valid.filter(valid[DROPPED].notnull()).mutate(
                        **{PROBLEMS: valid[DROPPED], REASON: valid[DROPPED_REASON]}
                    ),
                    dropped=True,
                )
            if kind == "orders":
                ctx.load_orders(
                    valid,
                    has_lines=bool(set(spec.line_fields) & present),
                    unique_lines=rules.items is None,
                    any_bad=any_bad,
                )
            else:
                ctx.load_keyed(valid)
            result.problems = ctx.problem_counts()
            wh.insert(
                "loads",
                ibis.memtable(
                    pa.table(
                        {
                            "load_id": [load_id],
                            "kind": [kind],
                            "path": [str(path)],
                            "file_sha256": [sha],
                            "format": [fmt_seen],
                            "source": [source],
                            "rows_read": [result.rows_read],
                            "rows_loaded": [result.loaded],
                            "lines_loaded": [result.lines_loaded],
                            "rows_duplicate": [result.duplicates],
                            "rows_rejected": [result.rejected],
                            "started_at": pa.array([started], pa.timestamp("us", "UTC")),
                            "finished_at": pa.array([datetime.now(UTC)], pa.timestamp("us", "UTC")),
                        }
                    )
                ),
            )
    finally:
        wh.set_timezone("UTC")
        wh.limit_memory(memory_before)
        wh.drop_staging(STAGE)
        wh.drop_staging(CHECKED)
        wh.drop_staging(FLAT)
        wh.drop_staging(PARSED)
        wh.drop_staging(JSON1)
        wh.drop_staging(RECORDS)
        wh.drop_staging("_segone_gone")
    return result


def _dry_run_report(wh: Warehouse, result: LoadResult, rejects: list[Reject]) -> None:
    """What a load of the rows read would do: problem counts and the first examples."""
    checked = wh.table(CHECKED)
    codes: dict[str, int] = {}
    for r in rejects:
        codes[r.problems] = codes.get(r.problems, 0) + 1
    for col, reason, hard in ((PROBLEMS, REASON, True), (DROPPED, DROPPED_REASON, False)):
        # distinct: the item rows a packed row was unpacked into share its line and problems
        rows = checked.filter(checked[col].notnull()).select(LINE, col, reason).distinct()
        n = int(wh.execute(rows.count()))
        if hard:
            result.rejected = n + len(rejects)
        else:
            result.fields_dropped = n
        if not n:
            continue
        split = rows.select(code=rows[col].split("; ").unnest())
        for r in wh.execute(split.group_by("code").agg(n=split.count())).itertuples():
            codes[str(r.code)] = codes.get(str(r.code), 0) + int(r.n)
        first = wh.execute(rows.order_by(LINE).select(LINE, reason).limit(5))
        result.examples += [(int(x[0]), str(x[1])) for x in first.itertuples(index=False)]
    result.examples = sorted([(r.line, r.reason) for r in rejects[:5]] + result.examples)[:8]
    result.problems = dict(sorted(codes.items(), key=lambda kv: -kv[1]))


def _staged_slices(
    wh: Warehouse, chunks: Iterator[Chunk], rows: int, rejects: list[Reject]
) -> Iterator[ir.Table]:
    """Stage the reader's chunks as they come, one slice of about ``rows`` rows at a time.

    Each chunk goes to the engine as soon as it is read (which spills beyond its memory cap),
    so no Python list of Arrow tables grows with the slice. Yields the staged table once per
    slice, which the caller finishes with before the next slice replaces it; a file with no
    rows still yields one empty slice (its columns are known). Rejected records are appended
    to ``rejects``. Readers always yield at least one chunk.
    """
    staged: ir.Table | None = None
    n = 0
    emitted = False
    for chunk in chunks:
        rejects.extend(chunk.rejects)
        if chunk.table.num_rows or staged is None:
            staged = wh.stage(STAGE, chunk.table, append=staged is not None)
            n += chunk.table.num_rows
        if n >= rows:
            yield staged
            staged, n, emitted = None, 0, True
    if staged is not None and (n or not emitted):
        yield staged


@dataclass
class _Ctx:
    wh: Warehouse
    spec: KindSpec
    result: LoadResult
    load_id: str
    path: str
    source: str
    now: ir.TimestampValue
    currency: str
    records: ir.Table  # _line -> the record as read, for quarantined rows

    # -- quarantine --------------------------------------------------------------------------
    def quarantine_rejects(self, rejects: list[Reject]) -> None:
        if not rejects:
            return
        t = pa.table(
            {
                "line": pa.array([r.line for r in rejects], pa.int64()),
                PROBLEMS: pa.array([r.problems for r in rejects], pa.string()),
                REASON: pa.array([r.reason for r in rejects], pa.string()),
                RECORD: pa.array([r.record for r in rejects], pa.string()),
            }
        )
        self._insert_quarantine(ibis.memtable(t).rename(**{LINE: "line"}))

    def quarantine(
        self,
        rows: ir.Table,
        reason: str | None = None,
        code: str | None = None,
        *,
        dropped: bool = False,
    ) -> None:
        """Record ``rows`` with their problems; ``dropped``: the rows loaded without the bad
        optional fields those problems name (counted apart from rejected rows)."""
        if reason is not None:
            rows = rows.mutate(**{PROBLEMS: lit(code or "rejected"), REASON: lit(reason)})
        if RECORD not in rows.columns:
            # the row as read; when it was not kept (its order's bad line was in another slice
            # of a large file), the row as parsed, under canonical names, so it can be re-sent
            parsed = ibis.struct({c: rows[c] for c in self.spec.names}).cast("json").cast("string")
            rows = rows.mutate(_parsed=parsed).select(LINE, PROBLEMS, REASON, "_parsed")
            rows = rows.left_join(self.records, LINE).drop(LINE + "_right")
            rows = rows.mutate(**{RECORD: rows[RECORD].fill_null(rows._parsed)}).drop("_parsed")
        self._insert_quarantine(rows, dropped=dropped)

    def _insert_quarantine(self, rows: ir.Table, *, dropped: bool = False) -> None:
        q = self.wh.table("quarantine")
        # idempotent: the same file's same bad row with the same reason is recorded once
        # (a file rewritten at the same path with another bad row on that line is recorded too)
        seen = q.filter(q.source_file == self.path).select(
            "line", "problems", _rec=q.record.fill_null("").hexdigest("md5")
        )
        # distinct: the item rows a packed row was unpacked into share its line and record
        rows = rows.select(
            line=rows[LINE], problems=rows[PROBLEMS], reason=rows[REASON], record=rows[RECORD]
        ).distinct()
        fresh = (
            rows.mutate(_rec=rows.record.fill_null("").hexdigest("md5"))
            .anti_join(seen, ["line", "problems", "_rec"])
            .drop("_rec")
        )
        n_all = int(self.wh.execute(rows.count()))
        if not n_all:
            return
        if dropped:
            self.result.fields_dropped += n_all
        else:
            self.result.rejected += n_all
        self.wh.insert(
            "quarantine",
            fresh.mutate(
                load_id=lit(self.load_id),
                kind=lit(self.spec.name),
                source_file=lit(self.path),
                quarantined_at=self.now,
            ),
        )

    def problem_counts(self) -> dict[str, int]:
        if not (self.result.rejected or self.result.fields_dropped):
            return {}
        q = self.wh.table("quarantine")
        mine = q.filter(q.source_file == self.path)
        codes = mine.select(code=mine.problems.split("; ").unnest())
        counts = self.wh.execute(
            codes.group_by("code").agg(n=codes.count()).order_by(ibis.desc("n"))
        )
        return {str(r.code): int(r.n) for r in counts.itertuples()}

    # -- events, products, customers, interactions --------------------------------------------
    def load_keyed(self, valid: ir.Table) -> None:
        kind = self.spec.name
        canon = [f.name for f in self.spec.fields]
        if kind in ("events", "interactions"):
            key = "message_id" if kind == "events" else "interaction_id"
            derived = lit("h-") + _hash([valid[c] for c in canon if c != key] + [valid.extra])
            valid = valid.mutate(**{key: valid[key].fill_null(derived)})
            keys = [key]
        elif kind == "enrichment":  # no id of its own: a row is its content
            valid = valid.mutate(row_hash=_hash([valid[c] for c in canon] + [valid.extra]))
            key, keys = "row_hash", ["row_hash"]
        else:
            key = "source_id" if kind == "customers" else "product_id"
            valid = valid.mutate(row_hash=_hash([valid[c] for c in canon] + [valid.extra]))
            keys = [key, "row_hash"]
        # one row per key: its line found by an aggregate and the rows picked by it (lines are
        # unique outside orders), much cheaper for the engine than a window over every row
        if kind in ("customers", "products"):  # a file states each record once: its last line wins
            pick = valid.group_by(key).aggregate(**{LINE: valid[LINE].max()})
        else:
            pick = valid.group_by(keys).aggregate(**{LINE: valid[LINE].min()})
        first = valid.semi_join(pick.select(LINE), LINE)
        table = TARGET_TABLE.get(kind, kind)
        existing = self.wh.table(table)
        if kind == "enrichment":
            existing = existing.filter(existing.source == self.source)
        if kind in ("customers", "products"):
            existing = existing.filter(existing.source == self.source)
            latest = existing.mutate(
                _rn=ibis.row_number().over(
                    group_by=[key],
                    order_by=[ibis.desc(existing.loaded_at), ibis.desc(existing.row_hash)],
                )
            )
            existing = latest.filter(latest._rn == 0)
        new = first.anti_join(existing.select(*keys), keys)
        n_valid = int(self.wh.execute(valid.count()))
        # the rows added are counted from the table, not by running the window and the anti-join
        # a second time
        before = self.wh.count(table)
        self.wh.insert(
            table,
            new.mutate(source=lit(self.source), load_id=lit(self.load_id), loaded_at=self.now),
        )
        n_new = self.wh.count(table) - before
        self.result.loaded += n_new
        self.result.duplicates += n_valid - n_new

    # -- orders: one row per order line or per order -------------------------------------------
    def load_orders(
        self, valid: ir.Table, *, has_lines: bool, unique_lines: bool, any_bad: bool
    ) -> None:
        """``unique_lines``: no two rows share a line number (no item rows were unpacked);
        ``any_bad``: some row of the file was rejected (its order's other rows are held back)."""
        if any_bad:
            checked = self.wh.table(CHECKED)
            bad_ids = (
                checked.filter(checked[PROBLEMS].notnull() & checked.order_id.notnull())
                .select("order_id")
                .distinct()
            )
            sibling = valid.semi_join(bad_ids, "order_id")
            self.quarantine(
                sibling,
                "order_id: another line of the same order was rejected, so the whole "
                "order is held back",
                "order_incomplete",
            )
            valid = valid.anti_join(bad_ids, "order_id")
        order_cols = [f.name for f in self.spec.fields if f.name not in self.spec.line_fields]
        # every row of the order (its lines, or repeated order-level rows) is part of its content
        row_fp = _hash([valid[c] for c in self.spec.names if c in valid.columns] + [valid.extra])
        rows = valid.mutate(_row_fp=row_fp)
        line_value = rows.quantity.cast("float64") * rows.unit_price - rows.line_discount.fill_null(
            0
        )
        sums = dict(
            # the rows' fingerprints in sorted order (sorting the list is much cheaper for the
            # engine than an ordered aggregate; the text is the same)
            _rows_fp=rows._row_fp.collect(include_null=True).sort().join("|"),
            _sum_lines=line_value.sum(),
            _sum_disc=rows.line_discount.sum(),
            _rows=rows.count(),
        )
        heads = [c for c in order_cols if c != "order_id"] + ["extra"]
        if unique_lines:
            # the order-level values are those of the order's first row: found by its line, which
            # is much cheaper for the engine than an arg_min per column
            agg = rows.group_by("order_id").aggregate(**sums, **{LINE: rows[LINE].min()})
            grouped = agg.join(valid.select(LINE, *heads), LINE)
        else:  # item rows unpacked from one file row share its line
            grouped = rows.group_by("order_id").aggregate(
                **sums,
                **{c: rows[c].argmin(rows[LINE]) for c in heads},
                **{LINE: rows[LINE].min()},
            )
        orders = grouped.mutate(
            amount=grouped.amount.fill_null(grouped._sum_lines),
            discount=grouped.discount.fill_null(grouped._sum_disc),
            currency=grouped.currency.upper().fill_null(self.currency),
            status=grouped.status.fill_null("completed"),
        )
        orders = orders.mutate(
            row_hash=_hash([orders[c] for c in order_cols] + [orders.extra, orders._rows_fp])
        )
        orders = self.wh.materialize("_segone_orders", orders)
        existing = self.wh.table("orders").select("order_id", old_hash="row_hash")
        joined = orders.left_join(existing, "order_id")
        conflict_ids = joined.filter(
            joined.old_hash.notnull() & (joined.old_hash != joined.row_hash)
        ).select("order_id")
        same = joined.filter(joined.old_hash == joined.row_hash)
        self.quarantine(
            valid.semi_join(conflict_ids, "order_id"),
            "order_id: already loaded with different values or lines; orders are "
            "immutable, send changes (returns, cancellations) as new orders",
            "order_conflict",
        )
        dup_rows = int(self.wh.execute(same._rows.sum().fill_null(0)))
        new = self.wh.materialize("_segone_new_orders", orders.anti_join(existing, "order_id"))
        n_new = int(self.wh.execute(new.count()))
        n_rows_new = int(self.wh.execute(new._rows.sum().fill_null(0)))
        self.result.loaded += n_new
        # rows of one order beyond the first are part of it, not duplicates, in an order-level file
        self.result.duplicates += dup_rows + (0 if has_lines else n_rows_new - n_new)
        meta = {"source": lit(self.source), "load_id": lit(self.load_id), "loaded_at": self.now}
        self.wh.insert("orders", new.mutate(**meta))
        if has_lines:
            lines = valid.semi_join(new, "order_id")
            lines = lines.mutate(
                line_number=lines.line_number.fill_null(
                    ibis.row_number().over(group_by="order_id", order_by=lines[LINE]) + 1
                ),
                returned_quantity=lines.returned_quantity.fill_null(0),
                line_discount=lines.line_discount.fill_null(0.0),
            )
            before = self.wh.count("order_lines")
            self.wh.insert("order_lines", lines.mutate(**meta))
            self.result.lines_loaded += self.wh.count("order_lines") - before
        self.wh.drop_staging("_segone_orders")
        self.wh.drop_staging("_segone_new_orders")


__all__ = ["TABLES", "LoadResult", "file_sha256", "ingest_file"]

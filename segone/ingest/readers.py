"""Readers: stream a CSV, Parquet, JSON Lines or JSON file as Arrow chunks of canonical columns.

A reader never validates values (the warehouse does that for all rows at once); it only
reports records it cannot parse at all (a CSV row with the wrong number of fields, a line that
is not JSON, an oversize Segment message), each with its line number.
"""

from __future__ import annotations

import codecs
import io
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from segone.exceptions import FileFormatError, SegoneError
from segone.ingest import formats, segment
from segone.ingest.formats import Detected, Source
from segone.ingest.kinds import KindSpec
from segone.ingest.mapping import ColumnMap, MapValue, require_columns, resolve

FORMATS = ("csv", "parquet", "jsonl", "json")
LINE = "_line"
EXTRA_JSON = "_extra"
EXTRA_PREFIX = "_x_"
JSON_TEXT = "_json"


@dataclass
class Reject:
    line: int
    problems: str
    reason: str
    record: str


@dataclass
class Chunk:
    table: pa.Table
    rejects: list[Reject] = field(default_factory=list)


@dataclass
class Reader:
    """An opened file: its chunks, and how staged columns map back to the user's names."""

    fmt: str
    chunks: Iterator[Chunk]
    extra_columns: dict[str, str]  # staged name -> original column name (csv/parquet)
    column_map: dict[str, str]
    detected: Detected = field(default_factory=Detected)


Progress = Callable[[int], None]  # called with bytes consumed so far


def detect_format(path: Path) -> str:
    """The format from the file's extension (of the file inside, for a zip)."""
    suffixes = [s.lower() for s in path.suffixes]
    if formats.compression_of(path) == "zip":
        suffixes = [s.lower() for s in Path(formats.zip_member(path).filename).suffixes]
    if suffixes and suffixes[-1] in (".gz", ".zip"):
        suffixes = suffixes[:-1]
    ext = suffixes[-1] if suffixes else ""
    table = {
        ".csv": "csv",
        ".tsv": "csv",
        ".txt": "csv",
        ".parquet": "parquet",
        ".pq": "parquet",
        ".jsonl": "jsonl",
        ".ndjson": "jsonl",
        ".json": "json",
    }
    if ext not in table:
        raise FileFormatError(
            f"cannot tell the format of {path.name} from its extension; pass --format "
            f"({', '.join(FORMATS)})"
        )
    return table[ext]


@dataclass(frozen=True)
class TextOptions:
    """How to read a text file, where the user says so (None: sniff it)."""

    encoding: str | None = None
    delimiter: str | None = None
    columns: tuple[str, ...] | None = None  # names of a headerless file's columns
    date_format: str | None = None  # DMY or MDY for slash dates


def open_reader(
    path: Path,
    spec: KindSpec,
    *,
    fmt: str | None,
    mapping: Mapping[str, MapValue],
    chunk_rows: int,
    progress: Progress | None = None,
    encoding: str | None = None,
    delimiter: str | None = None,
    columns: list[str] | tuple[str, ...] | str | None = None,
    date_format: str | None = None,
) -> Reader:
    """Open ``path`` for streaming. Every problem with the file itself (empty, binary,
    truncated, undecodable, no header) is a :class:`FileFormatError` naming the file."""
    if isinstance(columns, str):
        columns = columns.split(",")
    opts = TextOptions(
        encoding=formats.check_encoding(encoding) if encoding else None,
        delimiter=formats.parse_delimiter(delimiter) if delimiter else None,
        columns=tuple(c.strip() for c in columns) if columns else None,
        date_format=formats.parse_date_format(date_format) if date_format else None,
    )
    if path.stat().st_size == 0:
        raise FileFormatError(f"{path.name} is empty")
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise FileFormatError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "csv":
        return _csv_reader(path, spec, mapping, chunk_rows, progress, opts)
    if opts.columns:
        raise FileFormatError("--columns names the columns of a headerless CSV/text file only")
    if fmt == "parquet":
        if formats.compression_of(path):
            raise FileFormatError(f"{path.name}: a compressed Parquet file; decompress it first")
        reader = _parquet_reader(path, spec, mapping, chunk_rows, progress)
    elif fmt == "json":
        data, detected = _read_text(path, opts)
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            doc = _NOT_ONE_DOCUMENT  # JSON Lines under a .json name: read line by line
        if doc is not _NOT_ONE_DOCUMENT:
            reader = _json_reader(doc, len(data), spec, mapping, chunk_rows, progress)
            reader.detected = detected
        else:
            reader = _jsonl_text_reader(path, chunk_rows, progress, opts)
    else:
        reader = _jsonl_text_reader(path, chunk_rows, progress, opts)
    if opts.date_format:
        reader.detected.date_orders = {
            f.name: opts.date_format for f in spec.fields if f.kind in ("timestamp", "date")
        }
    return reader


def _read_text(path: Path, opts: TextOptions) -> tuple[bytes, Detected]:
    """A whole (JSON) file as UTF-8 bytes."""
    with Source(path) as src:
        data = src.read(-1)
        compression = src.compression
    enc = opts.encoding or formats.detect_encoding(path, data[: formats.SAMPLE_BYTES], True)
    if codecs.lookup(enc).name != "utf-8":
        data = _decode(path, data, enc).encode("utf-8")
    elif data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    return data, Detected(compression=compression, encoding=formats.encoding_name(enc))


def _decode(path: Path, data: bytes, enc: str) -> str:
    try:
        return formats.decode_head(data, enc, True)
    except FileFormatError as exc:
        raise FileFormatError(f"{path.name}: {exc}") from None


_NOT_ONE_DOCUMENT = object()


def _jsonl_text_reader(
    path: Path, chunk_rows: int, progress: Progress | None, opts: TextOptions
) -> Reader:
    """JSON Lines as raw text, one row per line; the warehouse parses it (see jsonflat)."""

    def reject(row: Any, line: int) -> Reject:
        return Reject(
            line,
            "malformed_json",
            f"line {line}: not valid JSON (raw control character 0x1e)",
            orjson.dumps({"text": row.text[:2000]}).decode(),
        )

    def shape(t: pa.Table, lines: np.ndarray) -> pa.Table:
        table = pa.table({JSON_TEXT: t.column(0), LINE: pa.array(lines, pa.int64())})
        # blank lines are not records
        blank = pa.compute.equal(pa.compute.utf8_trim_whitespace(table[JSON_TEXT]), "")
        return table.filter(pa.compute.invert(blank))

    read = pacsv.ReadOptions(
        use_threads=False,
        column_names=[JSON_TEXT],
        encoding="utf8",
        block_size=max(1 << 20, min(64 << 20, chunk_rows * 300)),
    )
    parse = dict(
        delimiter="\x1e",
        quote_char=False,
        escape_char=False,
        ignore_empty_lines=False,
        newlines_in_values=False,
    )
    convert = pacsv.ConvertOptions(column_types={JSON_TEXT: pa.string()}, strings_can_be_null=False)
    head, whole, compression = formats.read_head(path)
    enc = opts.encoding or formats.detect_encoding(path, head, whole)
    detected = Detected(compression=compression, encoding=formats.encoding_name(enc))
    chunks = _stream_csv(
        path,
        read,
        parse,
        convert,
        first_line=1,
        reject=reject,
        progress=progress,
        shape=shape,
        encoding=enc,
    )
    return Reader("jsonl", chunks, {}, {}, detected)


# -- CSV and Parquet: map columns once from the header -----------------------------------------
def _rename(
    table: pa.Table, cmap: ColumnMap, extra_names: dict[str, str], first_line: np.ndarray
) -> pa.Table:
    cols, names = [], []
    for canon, src in cmap.canonical.items():
        cols.append(table.column(src))
        names.append(canon)
    for staged, src in extra_names.items():
        cols.append(table.column(src))
        names.append(staged)
    cols.append(pa.array(first_line, pa.int64()))
    names.append(LINE)
    return pa.Table.from_arrays(cols, names=names)


def _sniff_csv(
    path: Path, spec: KindSpec, opts: TextOptions
) -> tuple[list[str], Detected, str, str]:
    """The header (or --columns), and the file's encoding, delimiter and header, from its head.

    Also returns the head as text, cut after its last complete line, to sample values from."""
    head, whole, compression = formats.read_head(path)
    if not head.strip():
        raise FileFormatError(f"{path.name} is empty: a CSV file needs a header line")
    enc = opts.encoding or formats.detect_encoding(path, head, whole)
    text = _decode(path, head, enc).lstrip("\ufeff")
    text = formats.first_lines(text, whole)
    if not text.strip():
        raise FileFormatError(
            f"{path.name}: the first line is over {formats.SAMPLE_BYTES >> 20} MB long; "
            "that is not a CSV header (is this the right file?)"
        )
    delim = opts.delimiter or formats.sniff_delimiter(text)
    first = [h.strip() for h in formats.split_first(text, delim)]
    detected = Detected(
        compression=compression, encoding=formats.encoding_name(enc), delimiter=delim
    )
    if opts.columns:
        header = list(opts.columns)
        if len(header) != len(first):
            raise FileFormatError(
                f"{path.name}: --columns names {len(header)} column(s), the first line has "
                f"{len(first)}"
            )
        detected.header = False
    elif formats.looks_like_data(first):
        shown = " ".join(first)[:60]
        raise FileFormatError(
            f"{path.name} has no header line (the first line, {shown!r}, is values): name its "
            f"{len(first)} columns with --columns, e.g. --columns "
            + ",".join(([f.name for f in spec.fields if f.required] + ["..."])[: len(first)])
        )
    else:
        header = first
    if len(set(header)) != len(header):
        dupes = sorted({h for h in header if header.count(h) > 1})
        raise FileFormatError(f"{path.name}: duplicate column name(s) in the header: {dupes}")
    if any(h == "" for h in header):
        raise FileFormatError(f"{path.name}: the header has an empty column name")
    detected.columns = header
    return header, detected, text, enc


def _sample(text: str, header: list[str], detected: Detected) -> pa.Table:
    """The head's rows as text columns, read as the stream will be."""
    if detected.delimiter == formats.WHITESPACE:
        text = formats.collapse_whitespace(text)
    try:
        return pacsv.read_csv(
            io.BytesIO(text.encode("utf-8")),
            read_options=pacsv.ReadOptions(
                use_threads=False, column_names=header, skip_rows=1 if detected.header else 0
            ),
            parse_options=pacsv.ParseOptions(
                **_parse_options(detected.delimiter), invalid_row_handler=lambda row: "skip"
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={h: pa.string() for h in header}, strings_can_be_null=True
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return _empty(header)


def _parse_options(delim: str | None) -> dict[str, Any]:
    if delim == formats.WHITESPACE:
        return dict(delimiter="\t", quote_char=False, newlines_in_values=False)
    return dict(delimiter=delim or ",", newlines_in_values=True)


def _value_formats(
    path: Path,
    spec: KindSpec,
    cmap: ColumnMap,
    sample: pa.Table,
    detected: Detected,
    opts: TextOptions,
) -> None:
    """Decide, from the sample, the day/month order of each date field and the decimal mark."""

    def values(src: str) -> list[str]:
        return [v for v in sample.column(src).to_pylist() if v]

    undecided: list[tuple[str, str, formats.DateVotes]] = []
    for f in spec.fields:
        src = cmap.canonical.get(f.name)
        if src is None or f.kind not in ("timestamp", "date"):
            continue
        if f.kind == "date":
            md = formats.month_day_order_of(values(src))
            if md:
                detected.month_day[f.name] = opts.date_format or md
        if opts.date_format:
            detected.date_orders[f.name] = opts.date_format
            continue
        votes = formats.date_order_of(values(src))
        if votes.order:
            detected.date_orders[f.name] = votes.order
        elif votes.n:
            undecided.append((f.name, src, votes))
    for name, src, votes in undecided:
        if votes.dmy:  # as many day-first as month-first values
            raise FileFormatError(
                f"{path.name}: column {src!r} mixes day-first ({votes.dmy_example!r}) and "
                f"month-first ({votes.mdy_example!r}) dates. Say which the file means with "
                "--date-format DMY or --date-format MDY"
            )
        orders = set(detected.date_orders.values())
        if len(orders) != 1:  # no other column of the file decides either
            raise FileFormatError(
                f"{path.name}: dates in column {src!r} (e.g. {votes.example!r}) could be "
                f"DD/MM/YYYY or MM/DD/YYYY: no value in the first {sample.num_rows} rows has a "
                "day over 12. Say which with --date-format DMY or --date-format MDY"
            )
        detected.date_orders[name] = orders.pop()
        detected.notes.append(f"dates in {name}: no value decides; read as the file's other dates")
    dot = comma = 0
    for f in spec.fields:
        src = cmap.canonical.get(f.name)
        if src is not None and f.kind in ("int", "float"):
            d, c = formats.decimal_votes(values(src))
            dot, comma = dot + d, comma + c
    detected.decimal, detected.decimal_why = formats.choose_decimal(dot, comma, detected.delimiter)


def _csv_reader(
    path: Path,
    spec: KindSpec,
    mapping: Mapping[str, MapValue],
    chunk_rows: int,
    progress: Progress | None,
    opts: TextOptions,
) -> Reader:
    header, detected, head, enc = _sniff_csv(path, spec, opts)
    cmap = resolve(spec, header, mapping)
    require_columns(spec, cmap, header)
    _value_formats(path, spec, cmap, _sample(head, header, detected), detected, opts)
    extra_names = {f"{EXTRA_PREFIX}{i}": c for i, c in enumerate(cmap.extra)}

    def reject(row: Any, line: int) -> Reject:
        return Reject(
            line,
            "wrong_field_count",
            f"line {line}: expected {row.expected_columns} fields, found {row.actual_columns}",
            orjson.dumps({"text": row.text[:2000]}).decode(),
        )

    read = pacsv.ReadOptions(
        use_threads=False,
        column_names=header,
        skip_rows=1 if detected.header else 0,
        block_size=max(1 << 20, min(64 << 20, chunk_rows * 200)),
        encoding="utf8",
    )
    parse = _parse_options(detected.delimiter)
    convert = pacsv.ConvertOptions(
        column_types={h: pa.string() for h in header},
        strings_can_be_null=True,
        null_values=[""],
        quoted_strings_can_be_null=True,
    )
    chunks = _stream_csv(
        path,
        read,
        parse,
        convert,
        first_line=2 if detected.header else 1,
        reject=reject,
        progress=progress,
        shape=lambda t, lines: _rename(t, cmap, extra_names, lines),
        encoding=enc,
        whitespace=detected.delimiter == formats.WHITESPACE,
    )
    return Reader("csv", chunks, extra_names, cmap.canonical, detected)


def _stream_csv(
    path: Path,
    read: pacsv.ReadOptions,
    parse: dict[str, Any],
    convert: pacsv.ConvertOptions,
    *,
    first_line: int,
    reject: Callable[[Any, int], Reject],
    shape: Callable[[pa.Table, np.ndarray], pa.Table],
    progress: Progress | None,
    encoding: str = "utf-8",
    whitespace: bool = False,
) -> Iterator[Chunk]:
    """Stream a delimited file with Arrow, numbering records and catching malformed ones.

    Arrow reports a malformed row's record number to the handler and leaves it out of the
    batch; the numbers of the rows it does return are rebuilt around those gaps. Files that are
    not UTF-8 (or are whitespace-separated) are transcoded block by block on the way in.
    """
    bad: list[Reject] = []
    bad_lines: set[int] = set()

    def on_invalid(row: Any) -> str:
        line = int(row.number) if row.number is not None else -1
        bad_lines.add(line)
        bad.append(reject(row, line))
        return "skip"

    src = Source(path)
    next_line = first_line

    def failed(exc: BaseException) -> FileFormatError:
        if isinstance(exc, FileFormatError):
            return exc
        msg = str(exc)
        if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
            return formats.truncated(path, src.compression, exc)
        if "invalid UTF8" in msg or isinstance(exc, UnicodeDecodeError):
            return FileFormatError(
                f"{path.name}: not valid UTF-8 after line {next_line} (the first "
                f"{formats.SAMPLE_BYTES >> 20} MB was); pass --encoding with the file's "
                "encoding (e.g. cp1252)"
            )
        if "straddl" in msg:
            return FileFormatError(
                f"{path.name}: a record after line {next_line} is over "
                f"{read.block_size >> 20} MB long"
            )
        return FileFormatError(f"{path.name}: cannot read past line {next_line}: {msg}")

    try:
        if codecs.lookup(encoding).name in ("utf-8", "utf-8-sig") and not whitespace:
            # Arrow reads UTF-8 (and skips a BOM) itself; gzip is inflated by Arrow too
            stream: Any = (
                pa.CompressedInputStream(src.raw, "gzip")
                if src.compression == "gzip"
                else src.stream
            )
        else:
            stream = formats.Utf8Stream(src, encoding, whitespace=whitespace)
        try:
            reader = pacsv.open_csv(
                stream,
                read_options=read,
                convert_options=convert,
                parse_options=pacsv.ParseOptions(**parse, invalid_row_handler=on_invalid),
            )
        except (pa.ArrowInvalid, OSError, UnicodeDecodeError, FileFormatError) as exc:
            if "Empty CSV file" in str(exc):
                reader = None
            else:
                raise failed(exc) from None
        yielded = False
        while reader is not None:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            except (pa.ArrowInvalid, OSError, UnicodeDecodeError, FileFormatError) as exc:
                raise failed(exc) from None
            n = batch.num_rows
            skip = sorted(x for x in bad_lines if x >= next_line)
            cand = np.arange(next_line, next_line + n + len(skip), dtype=np.int64)
            if skip:
                cand = cand[~np.isin(cand, np.array(skip, dtype=np.int64))]
            lines = cand[:n]
            if n:
                next_line = int(lines[-1]) + 1
            bad_lines.difference_update(x for x in skip if x < next_line)
            yield Chunk(shape(pa.Table.from_batches([batch]), lines), bad)
            yielded = True
            bad = []
            if progress:
                progress(src.tell_raw())
        if bad or not yielded:
            empty = pa.table({c: pa.array([], pa.string()) for c in read.column_names})
            yield Chunk(shape(empty, np.array([], np.int64)), bad)
    finally:
        src.close()


def _empty(header: list[str]) -> pa.Table:
    return pa.table({h: pa.array([], pa.string()) for h in header})


def _parquet_reader(
    path: Path,
    spec: KindSpec,
    mapping: Mapping[str, MapValue],
    chunk_rows: int,
    progress: Progress | None,
) -> Reader:
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise FileFormatError(f"{path.name} is not a readable Parquet file: {exc}") from None
    header = pf.schema_arrow.names
    cmap = resolve(spec, header, mapping)
    require_columns(spec, cmap, header)
    extra_names = {f"{EXTRA_PREFIX}{i}": c for i, c in enumerate(cmap.extra)}
    size = max(path.stat().st_size, 1)
    total = max(pf.metadata.num_rows, 1)

    def chunks() -> Iterator[Chunk]:
        line = 1
        for batch in pf.iter_batches(batch_size=chunk_rows):
            n = batch.num_rows
            table = _rename(
                pa.Table.from_batches([batch]),
                cmap,
                extra_names,
                np.arange(line, line + n, dtype=np.int64),
            )
            line += n
            yield Chunk(table)
            if progress:
                progress(int(size * min(1.0, (line - 1) / total)))

    return Reader("parquet", chunks(), extra_names, cmap.canonical)


# -- JSON Lines and JSON: per record, keys mapped with a cache ---------------------------------
def _json_reader(
    doc: Any,
    size: int,
    spec: KindSpec,
    mapping: Mapping[str, MapValue],
    chunk_rows: int,
    progress: Progress | None,
) -> Reader:
    """A whole JSON document: one record (or Segment message), a list, or ``{"batch": [...]}``."""
    is_events = spec.name == "events"
    fields = list(segment.FIELDS) if is_events else spec.names
    cache: dict[frozenset[str], ColumnMap] = {}

    def to_row(rec: Any, line: int) -> tuple[dict[str, str | None] | None, Reject | None]:
        if not isinstance(rec, dict):
            return None, Reject(
                line,
                "not_an_object",
                f"line {line}: a record must be a JSON object",
                orjson.dumps(rec).decode()[:2000],
            )
        if is_events:
            return segment.flatten(rec), None
        keys = frozenset(rec)
        cmap = cache.get(keys)
        if cmap is None:
            cmap = cache[keys] = resolve(
                spec,
                list(rec),
                mapping
                if set(mapping.values()) <= keys
                else {k: v for k, v in mapping.items() if v in keys},
            )
        row: dict[str, str | None] = {
            f: segment._text(rec.get(src)) for f, src in cmap.canonical.items()
        }
        extra = {k: rec[k] for k in cmap.extra}
        row["_extra"] = orjson.dumps(extra).decode() if extra else None
        return row, None

    def build(rows: list[dict[str, str | None]], lines: list[int]) -> pa.Table:
        cols = {f: pa.array([r.get(f) for r in rows], pa.string()) for f in fields}
        cols[EXTRA_JSON] = pa.array([r.get("_extra") for r in rows], pa.string())
        cols[LINE] = pa.array(lines, pa.int64())
        return pa.table(cols)

    def records() -> Iterator[tuple[int, Any]]:
        items = segment.messages_of(doc) if is_events else (doc if isinstance(doc, list) else [doc])
        yield from enumerate(items, start=1)
        if progress:
            progress(size)

    def chunks() -> Iterator[Chunk]:
        rows: list[dict[str, str | None]] = []
        lines: list[int] = []
        rejects: list[Reject] = []
        for i, rec in records():
            row, rej = to_row(rec, i)
            if row is not None:
                rows.append(row)
                lines.append(i)
            if rej is not None:
                rejects.append(rej)
            if len(rows) >= chunk_rows:
                yield Chunk(build(rows, lines), rejects)
                rows, lines, rejects = [], [], []
        yield Chunk(build(rows, lines), rejects)

    return Reader("json", chunks(), {}, {f: f for f in fields})


def peek_header(
    path: Path,
    fmt: str | None,
    spec: KindSpec,
    *,
    encoding: str | None = None,
    delimiter: str | None = None,
) -> list[str] | None:
    """The column names of a CSV or Parquet file, read as the reader will read them (None for
    JSON, a headerless file, or when unreadable: the reader itself then reports the problem)."""
    try:
        fmt = fmt or detect_format(path)
        if fmt == "csv":
            opts = TextOptions(
                encoding=formats.check_encoding(encoding) if encoding else None,
                delimiter=formats.parse_delimiter(delimiter) if delimiter else None,
            )
            return _sniff_csv(path, spec, opts)[0]
        if fmt == "parquet":
            return list(pq.ParquetFile(path).schema_arrow.names)
    except (SegoneError, pa.ArrowInvalid, OSError, UnicodeError, LookupError):
        return None
    return None

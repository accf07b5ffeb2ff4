"""Readers: stream a CSV, Parquet, JSON Lines or JSON file as Arrow chunks of canonical columns.

A reader never validates values (the warehouse does that for all rows at once); it only
reports records it cannot parse at all (a CSV row with the wrong number of fields, a line that
is not JSON, an oversize Segment message), each with its line number.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from segone.exceptions import FileFormatError
from segone.ingest import segment
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


Progress = Callable[[int], None]  # called with bytes consumed so far


def detect_format(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
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


def _open_binary(path: Path) -> IO[bytes]:
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def open_reader(
    path: Path,
    spec: KindSpec,
    *,
    fmt: str | None,
    mapping: Mapping[str, MapValue],
    chunk_rows: int,
    progress: Progress | None = None,
) -> Reader:
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise FileFormatError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "csv":
        return _csv_reader(path, spec, mapping, chunk_rows, progress)
    if fmt == "parquet":
        return _parquet_reader(path, spec, mapping, chunk_rows, progress)
    if fmt == "json":
        with _open_binary(path) as fb:
            data = fb.read()
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            doc = _NOT_ONE_DOCUMENT  # JSON Lines under a .json name: read line by line
        if doc is not _NOT_ONE_DOCUMENT:
            return _json_reader(doc, len(data), spec, mapping, chunk_rows, progress)
    return _jsonl_text_reader(path, chunk_rows, progress)


_NOT_ONE_DOCUMENT = object()


def _jsonl_text_reader(path: Path, chunk_rows: int, progress: Progress | None) -> Reader:
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
    chunks = _stream_csv(
        path, read, parse, convert, first_line=1, reject=reject, progress=progress, shape=shape
    )
    return Reader("jsonl", chunks, {}, {})


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


def _sniff_csv(path: Path) -> tuple[list[str], str]:
    with _open_binary(path) as fb:
        head = fb.read(1 << 16)
    try:
        text = head.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = head.decode("utf-8-sig", errors="ignore")
    first = text.splitlines()[0] if text.strip() else ""
    if not first:
        raise FileFormatError(f"{path.name} is empty: a CSV file needs a header line")
    counts = {d: first.count(d) for d in [",", ";", "\t", "|"]}
    delim = max(counts, key=lambda d: counts[d]) if max(counts.values()) > 0 else ","
    header = next(csv.reader(io.StringIO(first), delimiter=delim))
    header = [h.strip() for h in header]
    if len(set(header)) != len(header):
        dupes = sorted({h for h in header if header.count(h) > 1})
        raise FileFormatError(f"{path.name}: duplicate column name(s) in the header: {dupes}")
    if any(h == "" for h in header):
        raise FileFormatError(f"{path.name}: the header has an empty column name")
    return header, delim


def _csv_reader(
    path: Path,
    spec: KindSpec,
    mapping: Mapping[str, MapValue],
    chunk_rows: int,
    progress: Progress | None,
) -> Reader:
    header, delim = _sniff_csv(path)
    cmap = resolve(spec, header, mapping)
    require_columns(spec, cmap, header)
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
        skip_rows=1,
        block_size=max(1 << 20, min(64 << 20, chunk_rows * 200)),
        encoding="utf8",
    )
    parse = dict(delimiter=delim, newlines_in_values=True)
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
        first_line=2,
        reject=reject,
        progress=progress,
        shape=lambda t, lines: _rename(t, cmap, extra_names, lines),
    )
    return Reader("csv", chunks, extra_names, cmap.canonical)


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
) -> Iterator[Chunk]:
    """Stream a delimited file with Arrow, numbering records and catching malformed ones.

    Arrow reports a malformed row's record number to the handler and leaves it out of the
    batch; the numbers of the rows it does return are rebuilt around those gaps.
    """
    bad: list[Reject] = []
    bad_lines: set[int] = set()

    def on_invalid(row: Any) -> str:
        line = int(row.number) if row.number is not None else -1
        bad_lines.add(line)
        bad.append(reject(row, line))
        return "skip"

    raw = open(path, "rb")  # noqa: SIM115 - closed in finally
    try:
        stream = pa.CompressedInputStream(raw, "gzip") if path.suffix.lower() == ".gz" else raw
        reader = pacsv.open_csv(
            stream,
            read_options=read,
            convert_options=convert,
            parse_options=pacsv.ParseOptions(**parse, invalid_row_handler=on_invalid),
        )
        next_line = first_line
        yielded = False
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
                raise FileFormatError(
                    f"{path.name}: cannot read past line {next_line}: {exc}"
                ) from None
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
                progress(raw.tell())
        if bad or not yielded:
            empty = pa.table({c: pa.array([], pa.string()) for c in read.column_names})
            yield Chunk(shape(empty, np.array([], np.int64)), bad)
    finally:
        raw.close()


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


def peek_header(path: Path, fmt: str | None) -> list[str] | None:
    """The column names of a CSV or Parquet file (None for JSON, or when unreadable: the
    reader itself then reports the problem)."""
    try:
        fmt = fmt or detect_format(path)
        if fmt == "csv":
            return _sniff_csv(path)[0]
        if fmt == "parquet":
            return list(pq.ParquetFile(path).schema_arrow.names)
    except (FileFormatError, pa.ArrowInvalid, OSError, UnicodeDecodeError, csv.Error):
        return None
    return None

"""Formats: what a file's bytes and values look like, told from its first megabyte.

Sniffing happens once, at the header: the compression (gzip, zip), the text encoding, the
delimiter, whether the first line is a header, the day/month order of slash dates and the
decimal mark of numbers. The values themselves are parsed later, in the warehouse, for all rows
at once, by the expressions at the end of this module (:func:`datetime_text`,
:func:`number_value`), which take these decisions as arguments.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import re
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import ibis
import ibis.expr.types as ir

from segone.exceptions import FileFormatError

SAMPLE_BYTES = 1 << 20  # the head read to sniff encoding, delimiter, header and value formats
DELIMITERS = (",", ";", "\t", "|")
WHITESPACE = "whitespace"  # runs of spaces/tabs separate columns (fixed-width-ish text)
DMY, MDY = "DMY", "MDY"
SHOWN = {DMY: "DD/MM/YYYY", MDY: "MM/DD/YYYY"}


@dataclass
class Detected:
    """What was found (or forced) about a file, for a dry run to show and for parsing values.

    ``date_orders`` maps a canonical field to ``DMY`` or ``MDY`` for fields written as
    ``05/06/2024``; ``decimal`` is the decimal mark of numbers (``.`` or ``,``). ``notes`` says
    how each decision was made."""

    compression: str | None = None
    encoding: str = "utf-8"
    delimiter: str | None = None
    header: bool = True
    columns: list[str] = field(default_factory=list)
    date_orders: dict[str, str] = field(default_factory=dict)
    # year-less dates (Mailchimp's ``MM/DD`` birthdays): field -> MDY or DMY
    month_day: dict[str, str] = field(default_factory=dict)
    decimal: str = "."
    decimal_why: str = ""
    notes: list[str] = field(default_factory=list)

    def describe(self) -> list[str]:
        """One line per decision, for ``--dry-run`` and the ingest summary."""
        delim = {"\t": "tab", WHITESPACE: "runs of spaces"}.get(
            self.delimiter or "", self.delimiter
        )
        out = [
            f"encoding: {self.encoding}" + (f" ({self.compression})" if self.compression else "")
        ]
        if delim:
            out.append(f"delimiter: {delim!r}" if len(delim) == 1 else f"delimiter: {delim}")
        out.append("header: " + ("first line" if self.header else "none (--columns)"))
        for f, order in sorted(self.date_orders.items()):
            out.append(f"dates in {f}: {SHOWN[order]}")
        for f, order in sorted(self.month_day.items()):
            shown = "MM/DD" if order == "MDY" else "DD/MM"
            out.append(f"dates without a year in {f}: {shown} (month and day kept in extra)")
        why = f" ({self.decimal_why})" if self.decimal_why else ""
        out.append("decimal mark: " + ("comma" if self.decimal == "," else "dot") + why)
        return out + self.notes


# -- opening: compression ------------------------------------------------------------------------
_MAGIC = {
    b"PAR1": "a Parquet file (name it .parquet or pass --format parquet)",
    b"%PDF": "a PDF document",
    b"SQLi": "an SQLite database",
    b"\xd0\xcf\x11\xe0": "an old Excel/Office document (save it as CSV)",
}


def compression_of(path: Path) -> str | None:
    """``gzip`` or ``zip`` from the file's first bytes (whatever its name), else None."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic[:2] == b"\x1f\x8b":
        return "gzip"
    if magic == b"PK\x03\x04":
        return "zip"
    if path.suffix.lower() == ".gz":
        raise FileFormatError(f"{path.name}: named .gz but is not a gzip file")
    return None


def zip_member(path: Path) -> zipfile.ZipInfo:
    """The one file inside a zip archive (folders and macOS metadata do not count)."""
    try:
        with zipfile.ZipFile(path) as zf:
            members = [
                m
                for m in zf.infolist()
                if not m.is_dir()
                and not m.filename.startswith("__MACOSX/")
                and not m.filename.endswith(".DS_Store")
            ]
    except (zipfile.BadZipFile, OSError) as exc:
        raise FileFormatError(f"{path.name} is not a readable zip file: {exc}") from None
    names = [m.filename for m in members]
    if any(n.startswith("xl/") for n in names) and "[Content_Types].xml" in names:
        raise FileFormatError(f"{path.name} is an Excel workbook; save the sheet as CSV")
    if len(members) != 1:
        raise FileFormatError(
            f"{path.name}: a zip must hold exactly one file, this one holds {len(members)}"
            + (f" ({', '.join(names[:5])})" if names else "")
        )
    if members[0].flag_bits & 0x1:
        raise FileFormatError(f"{path.name}: the zip is encrypted")
    return members[0]


class Source:
    """A file's decompressed bytes, read as a stream; ``tell_raw`` is the position in the file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.compression = compression_of(path)
        member = zip_member(path) if self.compression == "zip" else None
        self.raw: io.BufferedReader = open(path, "rb")  # noqa: SIM115 - closed by close()
        self.stream: io.BufferedIOBase | IO[bytes] = self.raw
        try:
            if self.compression == "gzip":
                self.stream = gzip.GzipFile(fileobj=self.raw, mode="rb")
            elif member is not None:
                self.stream = zipfile.ZipFile(self.raw).open(member)  # noqa: SIM115
        except (zipfile.BadZipFile, OSError, NotImplementedError) as exc:
            self.raw.close()
            raise truncated(path, self.compression, exc) from None

    def read(self, n: int) -> bytes:
        try:
            return self.stream.read(n)
        except (EOFError, zlib.error, zipfile.BadZipFile, gzip.BadGzipFile, OSError) as exc:
            raise truncated(self.path, self.compression, exc) from None

    def tell_raw(self) -> int:
        return self.raw.tell()

    def close(self) -> None:
        if self.stream is not self.raw:
            self.stream.close()
        self.raw.close()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def truncated(path: Path, compression: str | None, exc: BaseException) -> FileFormatError:
    what = {"gzip": "gzip file", "zip": "zip file"}.get(compression or "", "file")
    return FileFormatError(f"{path.name}: the {what} is truncated or corrupt ({exc})")


def read_head(path: Path, n: int = SAMPLE_BYTES) -> tuple[bytes, bool, str | None]:
    """The first ``n`` decompressed bytes, whether that is the whole file, and the compression."""
    with Source(path) as src:
        head = src.read(n)
        whole = len(head) < n or not src.read(1)
        return head, whole, src.compression


# -- encodings -------------------------------------------------------------------------------
def _latin1_fallback(exc: UnicodeError) -> tuple[str, int]:
    # the five bytes Windows-1252 leaves undefined read as their Latin-1 characters (as browsers do)
    assert isinstance(exc, UnicodeDecodeError)
    return exc.object[exc.start : exc.end].decode("latin-1"), exc.end


codecs.register_error("segone-latin1", _latin1_fallback)

_ENCODING_NAMES = {"utf_8": "utf-8", "utf_8_sig": "utf-8 (BOM)", "utf_16": "utf-16"}


def encoding_name(enc: str) -> str:
    name = codecs.lookup(enc).name
    return {"cp1252": "windows-1252", "iso8859-1": "latin-1"}.get(
        name, _ENCODING_NAMES.get(name.replace("-", "_"), name)
    )


def check_encoding(enc: str) -> str:
    try:
        return codecs.lookup(enc).name
    except LookupError:
        raise FileFormatError(
            f"unknown encoding {enc!r} (try utf-8, utf-16, cp1252, latin-1)"
        ) from None


def detect_encoding(path: Path, head: bytes, whole: bool) -> str:
    """The codec name for ``head``: BOMs first, then UTF-8 if it decodes, else Windows-1252.

    Raises for binary files (NUL bytes that are not UTF-16, or a known binary signature)."""
    for magic, what in _MAGIC.items():
        if head.startswith(magic):
            raise FileFormatError(f"{path.name} is {what}, not a text file")
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "utf-32"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    probe = head[:4096]
    if b"\x00" in probe:
        even, odd = probe[0::2], probe[1::2]
        if odd and odd.count(0) > 0.3 * len(odd) and even.count(0) < 0.05 * len(even):
            return "utf-16-le"
        if even and even.count(0) > 0.3 * len(even) and odd.count(0) < 0.05 * len(odd):
            return "utf-16-be"
        at = head.index(b"\x00")
        raise FileFormatError(f"{path.name} looks binary (a NUL byte at offset {at}), not text")
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=whole)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    controls = sum(head.count(bytes([b])) for b in (*range(0, 9), 11, 12, *range(14, 27)))
    if controls > 0.01 * len(head):
        raise FileFormatError(f"{path.name} looks binary (control bytes), not text")
    return "cp1252"


def decode_head(head: bytes, encoding: str, whole: bool) -> str:
    errors = "segone-latin1" if codecs.lookup(encoding).name == "cp1252" else "strict"
    try:
        return codecs.getincrementaldecoder(encoding)(errors).decode(head, final=whole)
    except UnicodeDecodeError as exc:
        raise FileFormatError(
            f"not valid {encoding_name(encoding)} at byte {exc.start}; "
            "pass --encoding with the file's encoding (e.g. cp1252)"
        ) from None


class Utf8Stream(io.RawIOBase):
    """A binary stream transcoded to UTF-8 block by block (memory stays one block).

    With ``whitespace=True`` runs of spaces and tabs become one tab, and spaces at the start
    and end of lines go, so Arrow can read whitespace-aligned text as a table."""

    def __init__(
        self, src: Source, encoding: str, *, whitespace: bool = False, block: int = 1 << 20
    ) -> None:
        super().__init__()
        self.src = src
        errors = "segone-latin1" if codecs.lookup(encoding).name == "cp1252" else "strict"
        self.decoder = codecs.getincrementaldecoder(encoding)(errors)
        self.encoding = encoding
        self.whitespace = whitespace
        self.block = block
        self.buf = b""
        self.eof = False
        self.carry = ""  # trailing blanks (and a lone CR) held back for the next block
        self.line_start = True
        self.decoded = 0

    def readable(self) -> bool:
        return True

    def _fill(self) -> None:
        while not self.buf and not self.eof:
            raw = self.src.read(self.block)
            self.eof = not raw
            try:
                text = self.decoder.decode(raw, final=self.eof)
            except UnicodeDecodeError as exc:
                raise FileFormatError(
                    f"{self.src.path.name}: not valid {encoding_name(self.encoding)} "
                    f"near byte {self.decoded + exc.start}; pass --encoding with the file's "
                    "encoding (e.g. cp1252)"
                ) from None
            self.decoded += len(raw)
            if self.whitespace:
                text = self._collapse(text)
            self.buf = text.encode("utf-8")

    def _collapse(self, text: str) -> str:
        text = self.carry + text
        kept = text.rstrip(" \t\r")
        if self.eof:  # blanks at the very end would make one more (empty) column
            text = kept + text[len(kept) :].replace(" ", "").replace("\t", "")
        else:
            self.carry, text = text[len(kept) :], kept
        if self.line_start:
            text = text.lstrip(" \t")
        text = _tabs(text)
        if text:
            self.line_start = text.endswith("\n")
        return text

    def readinto(self, b: Any) -> int:
        self._fill()
        n = min(len(b), len(self.buf))
        b[:n] = self.buf[:n]
        self.buf = self.buf[n:]
        return n


def _tabs(text: str) -> str:
    # str.replace and a pattern that starts only at a blank: fast on long text
    text = _BLANKS.sub("\t", text).replace("\r\n", "\n").replace("\r", "\n")
    return text.replace("\t\n", "\n").replace("\n\t", "\n")


_BLANKS = re.compile(r"[ \t]+")


def collapse_whitespace(text: str) -> str:
    """The whitespace-separated ``text`` as tab-separated lines (as :class:`Utf8Stream` does)."""
    text = _tabs(text.lstrip(" \t"))
    return text[:-1] if text.endswith("\t") else text


# -- delimiters and header ---------------------------------------------------------------------
def parse_delimiter(value: str) -> str:
    names = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}
    names |= {"space": WHITESPACE, "spaces": WHITESPACE, "whitespace": WHITESPACE}
    d = names.get(value.lower(), value)
    if d != WHITESPACE and len(d) != 1:
        raise FileFormatError(
            f"--delimiter takes one character or tab, comma, semicolon, pipe, whitespace; "
            f"got {value!r}"
        )
    return d


def _records(text: str, delim: str, n: int) -> list[list[str]]:
    out: list[list[str]] = []
    try:
        for row in csv.reader(io.StringIO(text), delimiter=delim):
            if row:
                out.append(row)
            if len(out) >= n:
                break
    except csv.Error:
        pass
    return out


def first_lines(text: str, whole: bool) -> str:
    """``text`` up to its last line break (the rest may be a cut line), or all of a whole file."""
    if whole:
        return text
    cut = max(text.rfind("\n"), text.rfind("\r"))
    return text[: cut + 1] if cut >= 0 else ""


def sniff_delimiter(text: str) -> str:
    """The delimiter that splits the first lines into the same number (> 1) of fields.

    Among ``, ; tab |`` the one whose field count is most consistent over the first 30
    records wins (then the most fields); if none gives more than one field but splitting on
    runs of whitespace does, the file is whitespace-separated; else it is one column."""
    best: tuple[float, int, str] | None = None
    for d in DELIMITERS:
        rows = _records(text, d, 30)
        if not rows or len(rows[0]) < 2:
            continue
        width = len(rows[0])
        share = sum(len(r) == width for r in rows) / len(rows)
        if best is None or (share, width) > best[:2]:
            best = (share, width, d)
    if best is not None and best[0] >= 0.8:
        return best[2]
    lines = [ln.split() for ln in text.splitlines()[:30] if ln.strip()]
    if lines and len(lines[0]) > 1 and all(len(ln) == len(lines[0]) for ln in lines):
        return WHITESPACE
    return best[2] if best is not None else ","


_DATA_LIKE = re.compile(
    r"^[+-]?[$€£]?\s*[\d.,]+\s*%?$"  # numbers, amounts
    r"|^\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}([ T][\d:.]+)?(Z|[+-]\d{2}:?\d{2})?$"  # dates
    r"|^[\w.+-]+@[\w-]+\.[\w.-]+$"  # e-mail addresses
)


def looks_like_data(row: Sequence[str]) -> bool:
    """A first line whose every non-empty field is a number, date or e-mail is not a header."""
    cells = [c.strip() for c in row if c.strip()]
    return bool(cells) and all(_DATA_LIKE.match(c) for c in cells)


def split_first(text: str, delim: str) -> list[str]:
    if delim == WHITESPACE:
        return text.splitlines()[0].split() if text.strip() else []
    rows = _records(text, delim, 1)
    return rows[0] if rows else []


# -- value formats from a sample ----------------------------------------------------------------
SLASH_DATE = r"^(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})"
# a slash date as it votes on the day/month order: four- or two-digit year
_SLASH = re.compile(r"^(\d{1,2})[/.-](\d{1,2})[/.-](\d{4}|\d{2})(?:\D|$)")


def parse_date_format(value: str) -> str:
    """``--date-format``: DMY or MDY (also DD/MM/YYYY, %d/%m/%Y and the like)."""
    v = value.strip().upper().replace("%", "")
    v = re.sub(r"[^DMY]", "", v)
    v = re.sub(r"(.)\1+", r"\1", v)  # DDMMYYYY -> DMY
    if v not in (DMY, MDY):
        raise FileFormatError(
            f"--date-format takes DMY (DD/MM/YYYY) or MDY (MM/DD/YYYY), got {value!r}"
        )
    return v


@dataclass
class DateVotes:
    """How the slash dates of one column vote: day-first, month-first, and an example of each."""

    dmy: int = 0
    mdy: int = 0
    n: int = 0
    example: str = ""
    dmy_example: str = ""
    mdy_example: str = ""

    @property
    def order(self) -> str | None:
        if self.dmy == self.mdy:
            return None
        return DMY if self.dmy > self.mdy else MDY


def date_order_of(values: Iterable[str]) -> DateVotes:
    """How the values of one column say their day/month order.

    A value whose first part is over 12 can only be day-first (DMY); one whose second part is
    over 12 only month-first (MDY). No order when no value decides (or none is a slash date).
    When values disagree the majority wins; the rest then fail to parse and are quarantined."""
    v = DateVotes()
    for text in values:
        text = text.strip()
        m = _SLASH.match(text)
        if not m:
            continue
        v.n += 1
        v.example = v.example or text
        a, b = int(m.group(1)), int(m.group(2))
        if a > 12 >= b:
            v.dmy += 1
            v.dmy_example = v.dmy_example or text
        elif b > 12 >= a:
            v.mdy += 1
            v.mdy_example = v.mdy_example or text
    return v


# a date without a year: Mailchimp's birthday field exports as MM/DD (DD/MM when the audience
# field is set so)
MONTH_DAY = r"^(\d{1,2})[/.-](\d{1,2})$"
_MONTH_DAY = re.compile(MONTH_DAY)


def month_day_order_of(values: Iterable[str]) -> str | None:
    """MDY or DMY for a column's year-less dates (None: it has none).

    Month first unless more values can only be day first (``25/12``): Mailchimp's default."""
    n = dmy = mdy = 0
    for text in values:
        m = _MONTH_DAY.match(text.strip())
        if not m:
            continue
        n += 1
        a, b = int(m.group(1)), int(m.group(2))
        if a > 12 >= b:
            dmy += 1
        elif b > 12 >= a:
            mdy += 1
    if not n:
        return None
    return "DMY" if dmy > mdy else "MDY"


_CURRENCY = r"(?:[A-Za-z]{3}|US\$|[$€£¥₹])"
_AMOUNT_STRIP = re.compile(rf"^[+-]?\s*{_CURRENCY}?\s*|\s*{_CURRENCY}$")


def decimal_votes(values: Iterable[str]) -> tuple[int, int]:
    """(votes for a decimal dot, votes for a decimal comma) from numbers as written.

    ``1,234.50`` / ``1.234,50``: the later mark is the decimal. One mark followed by other than
    three digits (``12,5``, ``42.00``) is the decimal; a mark used twice (``1,234,567``) is a
    thousands separator. ``1,234`` and ``1.234`` say nothing."""
    dot = comma = 0
    for v in values:
        t = _AMOUNT_STRIP.sub("", v.strip())
        if not t or not re.fullmatch(r"[\d.,\s'’]+", t):
            continue
        d, c = t.count("."), t.count(",")
        if d and c:
            if t.rfind(".") > t.rfind(","):
                dot += 1
            else:
                comma += 1
        elif c:
            if c > 1:
                dot += 1
            elif len(t) - t.rfind(",") - 1 != 3:
                comma += 1
        elif d:
            if d > 1:
                comma += 1
            elif len(t) - t.rfind(".") - 1 != 3:
                dot += 1
    return dot, comma


def choose_decimal(dot: int, comma: int, delimiter: str | None) -> tuple[str, str]:
    """The file's decimal mark and why. Votes decide; without any, a semicolon-separated file
    (what spreadsheets write where the comma is the decimal mark) reads ``1,234`` as 1.234,
    any other file as 1234."""
    if dot or comma:
        mark = "," if comma > dot else "."
        if dot and comma:
            return mark, f"{dot} value(s) say dot, {comma} comma: the majority wins"
        return mark, f"from {dot + comma} value(s)"
    if delimiter == ";":
        return ",", "no value decides; a semicolon-separated file"
    return ".", "no value decides"


# -- the warehouse side: parse text with these decisions ----------------------------------------
_GROUP = {".": ", \u00a0'’\u202f", ",": ". \u00a0'’\u202f"}


def number_value(s: ir.StringValue, decimal: str = ".") -> ir.FloatingValue:
    """The number written in ``s``: currency symbols/codes and thousands separators removed,
    ``decimal`` as the decimal mark. Null when ``s`` is not a number written that way."""
    # fast path: plain digits (the bulk of most files) read as they are, with the same result
    # (tests/test_ingest_fastpath.py); the rewriting only runs for the other values
    return ibis.ifelse(
        s.re_search(_PLAIN_NUMBER[decimal]), s.try_cast("float64"), rewritten_number(s, decimal)
    )


def rewritten_number(s: ir.StringValue, decimal: str = ".") -> ir.FloatingValue:
    """:func:`number_value` for any text, by rewriting it into a form the engine reads."""
    t = s.re_replace(rf"^([+-]?)\s*{_CURRENCY}\s*", r"\1").re_replace(rf"\s*{_CURRENCY}$", "")
    t = t.re_replace(r"^([+-])\s+", r"\1")
    group = _GROUP[decimal]
    g = re.escape(group).replace("\\ ", " ")
    d = re.escape(decimal)
    shaped = t.re_search(rf"^[+-]?(\d{{1,3}}([{g}]\d{{3}})+|\d+)?({d}\d+)?$") & t.re_search(r"\d")
    plain = t.re_replace(f"[{g}]", "")
    if decimal == ",":
        plain = plain.replace(",", ".")
    value = ibis.ifelse(shaped, plain.try_cast("float64"), ibis.null("float64"))
    if decimal == ".":  # 1e3, .5 and other forms the engine reads
        value = value.fill_null(t.try_cast("float64"))
    return value


# numbers every rewrite of :func:`number_value` leaves as they are
_PLAIN_NUMBER = {".": r"^-?\d+(\.\d+)?$", ",": r"^-?\d+$"}
# date-times every rewrite of :func:`datetime_text` leaves as they are (ISO 8601)
ISO_DATETIME = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}(:?\d{2})?)?$"


# English month names and abbreviations ("Sept." too), each rewritten to a tagged number
_MONTHS = (
    "jan(?:uary)?",
    "feb(?:ruary)?",
    "mar(?:ch)?",
    "apr(?:il)?",
    "may",
    "june?",
    "july?",
    "aug(?:ust)?",
    "sep(?:t(?:ember)?)?",
    "oct(?:ober)?",
    "nov(?:ember)?",
    "dec(?:ember)?",
)
# a 12-hour clock: (before)(hour):(minutes[:seconds[.fraction]]) AM/PM (after)
_CLOCK12 = r"^(.*?)(\d{1,2}):(\d{2}(?::\d{2}(?:\.\d+)?)?)\s*([AaPp])\.?[Mm]\.?(.*)$"


def _named_months(t: ir.StringValue) -> ir.StringValue:
    """``May 5, 2024``, ``Sunday, May 5th 2024``, ``5 May 2024``, ``05-May-24`` → ISO order."""
    t = t.re_replace(r"(?i)^(mon|tue|wed|thu|fri|sat|sun)[a-z]*\.?,?\s+", "")
    for i, name in enumerate(_MONTHS, start=1):
        t = t.re_replace(rf"(?i)\b{name}\b\.?", f"M{i:02d}")
    t = t.re_replace(r"^M(\d{2})\s+(\d{1,2})(?:st|nd|rd|th)?,?\s+(\d{2,4})\b", r"\2/\1/\3")
    t = t.re_replace(r"^(\d{1,2})(?:st|nd|rd|th)?[\s-]+M(\d{2})[\s,-]+(\d{2,4})\b", r"\1/\2/\3")
    # now day/month/year, whatever the file's slash order: as DMY below
    return t


def _two_digit_years(t: ir.StringValue) -> ir.StringValue:
    """``5/5/24`` → ``5/5/2024``, as Python's ``%y`` reads it (00–68: 20xx, 69–99: 19xx)."""
    d = r"^(\d{1,2}[/.-]\d{1,2}[/.-])"
    t = t.re_replace(d + r"([0-5]\d|6[0-8])(\s|T|$)", r"\120\2\3")  # RE2: \1, then "20"
    return t.re_replace(d + r"(69|[7-9]\d)(\s|T|$)", r"\119\2\3")


def _clock24(t: ir.StringValue) -> ir.StringValue:
    """``6:34 PM`` → ``18:34``, ``12:05 am`` → ``00:05``."""
    hour = t.re_extract(_CLOCK12, 2).cast("int64")
    pm = t.re_extract(_CLOCK12, 4).upper() == "P"
    h24 = (hour % 12 + ibis.ifelse(pm, 12, 0)).cast("string").lpad(2, "0")
    rebuilt = (
        t.re_extract(_CLOCK12, 1)
        + h24
        + ":"
        + t.re_extract(_CLOCK12, 3)
        + t.re_extract(_CLOCK12, 5)
    )
    return ibis.ifelse(t.re_search(_CLOCK12) & (hour <= 12), rebuilt, t)


def datetime_text(s: ir.StringValue, order: str | None) -> ir.StringValue:
    """``s`` rewritten into the ISO form the engine casts: ``YYYYMMDD[HHMMSS]``, slash dates in
    ``order`` (DMY/MDY), ``YYYY/MM/DD``, two-digit years (as Python's ``%y``), English month
    names (``May 5, 2024``, ``05-May-24``), 12-hour clocks (``6:34 PM``), and a space before a
    ``-0500`` offset removed. Named zones (``America/New_York``, ``EST``) and ``Z`` pass
    through to the engine's cast."""
    named = s.re_search(r"(?i)[a-z]{3}") & s.re_search(r"(?i)\b(" + "|".join(_MONTHS) + r")\b")
    t = ibis.ifelse(named, _named_months(s), s)
    t = _two_digit_years(t)
    t = ibis.ifelse(t.re_search(r"(?i)\d\s*[ap]\.?m\b"), _clock24(t), t)
    t = t.re_replace(r"^(\d{4})(\d{2})(\d{2})$", r"\1-\2-\3")
    t = t.re_replace(r"^(\d{4})(\d{2})(\d{2})[T ]?(\d{2}):?(\d{2}):?(\d{2})", r"\1-\2-\3 \4:\5:\6")
    t = t.re_replace(r"^(\d{4})[/.](\d{1,2})[/.](\d{1,2})", r"\1-\2-\3")
    day_first = t.re_replace(SLASH_DATE, r"\3-\2-\1")
    if order == MDY:
        t = ibis.ifelse(named, day_first, t.re_replace(SLASH_DATE, r"\3-\1-\2"))
    elif order == DMY:
        t = day_first
    else:  # no file order: only the dates written with a month name are known
        t = ibis.ifelse(named, day_first, t)
    return t.re_replace(r"(\d)\s+([+-]\d{2}(?::?\d{2})?)$", r"\1\2")

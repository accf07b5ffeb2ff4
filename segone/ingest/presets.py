"""Presets: the layouts of the exports people already have (Shopify, WooCommerce, Stripe,
HubSpot, Mailchimp, Klaviyo, Segment warehouse tables, CDNOW), recognised from a file's header.

A preset is data, not a code path: which column feeds which canonical field, value maps for
categorical fields, constants, and three row rules (fill-down of record-level fields over an
order's line rows, dropping a spreadsheet's leading apostrophe, an id derived from the row when
the export has none). The built-in ones live in ``presets.toml`` beside this module; a project
adds its own in ``segone.toml`` (``[ingest.presets.NAME]``) or ``presets/*.toml``.

The row rules run on Arrow chunks as the reader yields them (before validation), so a
continuation row of an order is whole before anyone checks it. Fill-down carries the last
record across chunk boundaries.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from segone.exceptions import MappingError
from segone.ingest.kinds import KINDS, KindSpec, norm
from segone.ingest.mapping import Const, MapValue, RowId, Unmapped

_KEYS = {
    "items",
    "tool",
    "kind",
    "doc",
    "detect",
    "columns",
    "values",
    "constants",
    "fill_down",
    "row_id",
    "unquote",
    "header",
    "nest",
}


@dataclass(frozen=True)
class PackedItems:
    """Line items packed into cells of an order's one row, as WooCommerce's export plugins write
    them: ``line_item_1 = "name:Hoodie|product_id:12|sku:HD-1|quantity:2|subtotal:40.00|
    total:36.00"``, ``line_item_2 = …`` (or several items in one cell, split by ``item_sep``).

    Each item becomes a line row of the order (its order fields copied, its line number the
    item's place); ``fields`` maps a line field to the item keys that may hold it (the first
    present wins); fields in ``per_unit`` hold a line total and are divided by the quantity;
    ``discount`` is (before, after): the line discount is their difference.
    """

    columns: tuple[str, ...]  # column names or prefixes ending in "*"
    fields: dict[str, tuple[str, ...]]
    item_sep: str = ";"
    pair_sep: str = "|"
    kv_sep: str = ":"
    per_unit: tuple[str, ...] = ()
    discount: tuple[str, str] | None = None

    @classmethod
    def from_dict(cls, where: str, raw: Mapping[str, Any], spec: KindSpec) -> PackedItems:
        known = {"columns", "fields", "item_sep", "pair_sep", "kv_sep", "per_unit", "discount"}
        if not isinstance(raw, Mapping) or set(raw) - known:
            raise MappingError(f"{where}: items takes the keys {sorted(known)}")
        if spec.name != "orders":
            raise MappingError(f"{where}: items only unpack order lines")

        def names(v: Any) -> tuple[str, ...]:
            v = [v] if isinstance(v, str) else v
            if not isinstance(v, list) or not v or not all(isinstance(x, str) and x for x in v):
                raise MappingError(f"{where}: items: expected a name or a list of names, got {v!r}")
            return tuple(v)

        fields = {str(f): names(v) for f, v in dict(raw.get("fields", {})).items()}
        bad = [f for f in fields if f not in spec.line_fields]
        if bad or not fields:
            raise MappingError(
                f"{where}: items.fields must name line fields ({', '.join(spec.line_fields)}); "
                f"got {bad or 'none'}"
            )
        per_unit = names(raw["per_unit"]) if raw.get("per_unit") else ()
        discount = names(raw["discount"]) if raw.get("discount") else None
        if discount is not None and len(discount) != 2:
            raise MappingError(f"{where}: items.discount is [key before discount, key after]")
        return cls(
            columns=names(raw.get("columns")),
            fields=fields,
            item_sep=str(raw.get("item_sep", ";")),
            pair_sep=str(raw.get("pair_sep", "|")),
            kv_sep=str(raw.get("kv_sep", ":")),
            per_unit=per_unit,
            discount=(discount[0], discount[1]) if discount else None,
        )

    def line_fields(self) -> tuple[str, ...]:
        """The line fields the items fill (line numbers always; discounts when computed)."""
        out = ("line_number", *self.fields)
        return (*out, "line_discount") if self.discount else out

    def matches(self, column: str) -> bool:
        c = norm(column)
        return any(
            c.startswith(norm(p[:-1])) if p.endswith("*") else c == norm(p) for p in self.columns
        )

    def unpack(self, cells: Iterable[str | None]) -> list[dict[str, str | None]]:
        """The line fields of every item in one row's packed cells, in order."""
        out: list[dict[str, str | None]] = []
        for cell in cells:
            if not cell or not cell.strip():
                continue
            for text in cell.split(self.item_sep) if self.item_sep else [cell]:
                kv: dict[str, str] = {}
                for pair in text.split(self.pair_sep):
                    k, sep, v = pair.partition(self.kv_sep)
                    if sep:
                        kv.setdefault(k.strip().lower(), v.strip())
                if not kv:
                    continue
                line: dict[str, str | None] = {}
                for f, keys in self.fields.items():
                    line[f] = next((kv[k] for k in keys if kv.get(k)), None)
                qty = _number(line.get("quantity"))
                for f in self.per_unit:
                    total = _number(line.get(f))
                    line[f] = None if total is None or not qty else _plain(total / qty)
                if self.discount:
                    before, after = (_number(kv.get(k)) for k in self.discount)
                    if before is not None and after is not None and "line_discount" not in line:
                        line["line_discount"] = _plain(max(before - after, 0.0))
                out.append(line)
        return out


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def _plain(x: float) -> str:
    return f"{round(x, 6):.6f}".rstrip("0").rstrip(".")


@dataclass(frozen=True)
class Preset:
    """One export layout. ``columns`` maps a canonical field to its candidate source columns."""

    name: str
    kind: str
    tool: str = ""
    doc: str = ""
    detect: tuple[str, ...] = ()
    columns: dict[str, tuple[str, ...]] = field(default_factory=dict)
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    constants: dict[str, str] = field(default_factory=dict)
    fill_down: str | None = None
    row_id: str | None = None
    unquote: tuple[str, ...] = ()
    header: tuple[str, ...] = ()
    nest: dict[str, str] = field(default_factory=dict)  # column prefix ("*": any) -> json field
    items: PackedItems | None = None
    builtin: bool = True

    @classmethod
    def from_dict(cls, name: str, raw: Mapping[str, Any], *, builtin: bool) -> Preset:
        where = f"preset {name!r}"
        unknown = set(raw) - _KEYS
        if unknown:
            raise MappingError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(_KEYS)}")
        kind = raw.get("kind")
        if kind not in KINDS:
            raise MappingError(f"{where}: kind must be one of {', '.join(KINDS)}, not {kind!r}")
        spec = KINDS[kind]

        def strings(v: Any, what: str) -> tuple[str, ...]:
            v = [v] if isinstance(v, str) else v
            if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
                raise MappingError(f"{where}: {what} must be a column name or a list of them")
            return tuple(v)

        def known(fields: Iterable[str], what: str) -> None:
            bad = [f for f in fields if f not in spec.names]
            if bad:
                raise MappingError(
                    f"{where}: {what} names unknown {kind} field(s) {bad}; "
                    f"known: {', '.join(spec.names)}"
                )

        columns = {f: strings(v, f"columns.{f}") for f, v in dict(raw.get("columns", {})).items()}
        values = {
            f: {norm_value(k): str(v) for k, v in dict(m).items()}
            for f, m in dict(raw.get("values", {})).items()
        }
        constants = {f: str(v) for f, v in dict(raw.get("constants", {})).items()}
        known(columns, "columns")
        known(values, "values")
        known(constants, "constants")
        fill_down, row_id = raw.get("fill_down"), raw.get("row_id")
        known([x for x in (row_id,) if x], "row_id")
        unquote = strings(raw.get("unquote", []), "unquote") if raw.get("unquote") else ()
        known(unquote, "unquote")
        nest = {str(k): str(v) for k, v in dict(raw.get("nest", {})).items()}
        known(nest.values(), "nest")
        if any(spec.field(f).kind != "json" for f in nest.values()):
            raise MappingError(f"{where}: nest may only fill JSON fields (traits, properties, …)")
        items = PackedItems.from_dict(where, raw["items"], spec) if raw.get("items") else None
        return cls(
            name=name,
            kind=kind,
            tool=str(raw.get("tool", "")),
            doc=str(raw.get("doc", "")),
            detect=strings(raw.get("detect", []), "detect") if raw.get("detect") else (),
            columns=columns,
            values=values,
            constants=constants,
            fill_down=fill_down,
            row_id=row_id,
            unquote=unquote,
            header=strings(raw["header"], "header") if raw.get("header") else (),
            nest=nest,
            items=items,
            builtin=builtin,
        )

    def mapping(
        self, header: Iterable[str]
    ) -> tuple[dict[str, MapValue], dict[str, tuple[str, ...]]]:
        """(explicit mapping for the reader, fallbacks) for a file with ``header``.

        Each field takes the first of its candidate columns that the file has; the other
        candidates it has become fallbacks (``{field: ("col2", "col3")}``), in order.
        """
        by_norm: dict[str, str] = {}
        for h in header:
            by_norm.setdefault(norm(h), h)
        explicit: dict[str, MapValue] = {}
        fallbacks: dict[str, tuple[str, ...]] = {}
        for f, cands in self.columns.items():
            present = [by_norm[norm(c)] for c in cands if norm(c) in by_norm]
            if present:
                explicit[f] = present[0]
                if len(present) > 1:
                    fallbacks[f] = tuple(present[1:])
        for f, v in self.constants.items():
            explicit.setdefault(f, Const(v))
        if self.row_id:
            explicit[self.row_id] = RowId()
        for f in set(self.nest.values()):
            explicit.setdefault(f, Const("{}"))  # built from the columns it nests
        if self.items and any(self.items.matches(h) for h in by_norm.values()):
            for f in self.items.line_fields():
                explicit.setdefault(f, Const(""))  # unpacked from the item cells
        for f in KINDS[self.kind].names:  # only the preset's columns feed fields
            explicit.setdefault(f, Unmapped())
        return explicit, fallbacks

    def matches(self, header: Iterable[str]) -> bool:
        have = {norm(h) for h in header}
        return bool(self.detect) and all(norm(c) in have for c in self.detect)

    def describe(self) -> str:
        parts = []
        for f, cands in self.columns.items():
            parts.append(f"{f} <- {' | '.join(cands)}")
        parts += [f"{f} = {v!r}" for f, v in self.constants.items()]
        if self.row_id:
            parts.append(f"{self.row_id} <- derived from each row")
        return "; ".join(parts)


def norm_value(v: Any) -> str:
    return str(v).strip().lower()


def builtin_presets() -> dict[str, Preset]:
    text = resources.files("segone.ingest").joinpath("presets.toml").read_text(encoding="utf-8")
    return {k: Preset.from_dict(k, v, builtin=True) for k, v in tomllib.loads(text).items()}


def all_presets(user: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Preset]:
    """The built-in presets plus a project's own (``user``: name -> the same keys as the TOML)."""
    out = builtin_presets()
    for name, raw in (user or {}).items():
        out[name] = Preset.from_dict(name, raw, builtin=False)
    return out


def detect_preset(kind: str, header: list[str], presets: Mapping[str, Preset]) -> Preset | None:
    """The preset of ``kind`` whose detect columns are all in ``header`` (the most specific one:
    the most detect columns; on a tie a project's own preset wins, then the name)."""
    cands = [p for p in presets.values() if p.kind == kind and p.matches(header)]
    if not cands:
        return None
    cands.sort(key=lambda p: (-len(p.detect), p.builtin, p.name))
    return cands[0]


def get_preset(name: str, kind: str, presets: Mapping[str, Preset]) -> Preset:
    if name not in presets:
        raise MappingError(
            f"unknown preset {name!r}; `segone ingest presets` lists them: {', '.join(presets)}"
        )
    p = presets[name]
    if p.kind != kind:
        raise MappingError(f"preset {name!r} is for {p.kind} files, not {kind}")
    return p


def parse_value_maps(options: Iterable[str]) -> dict[str, dict[str, str]]:
    """``--map-values FIELD:FROM=TO`` options (repeatable; FROM compared without case)."""
    out: dict[str, dict[str, str]] = {}
    for opt in options:
        f, sep, rest = opt.partition(":")
        src, eq, dst = rest.partition("=")
        if not sep or not eq or not f.strip() or not src.strip():
            raise MappingError(f"--map-values expects FIELD:FROM=TO, got {opt!r}")
        out.setdefault(f.strip(), {})[norm_value(src)] = dst.strip()
    return out


# -- row rules on Arrow chunks ------------------------------------------------------------------
@dataclass
class RowRules:
    """What a preset (and ``--map-values``) does to each chunk, after the columns are named."""

    spec: KindSpec
    fallbacks: dict[str, list[str]] = field(default_factory=dict)  # field -> staged columns
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    constants: dict[str, str] = field(default_factory=dict)
    fill_down: str | None = None
    row_id: str | None = None
    unquote: tuple[str, ...] = ()
    nest: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # field -> (key, staged)
    items: PackedItems | None = None
    item_columns: list[str] = field(default_factory=list)  # staged columns holding packed items
    _carry: dict[str, Any] | None = None

    @classmethod
    def build(
        cls,
        spec: KindSpec,
        preset: Preset | None,
        fallbacks: Mapping[str, tuple[str, ...]],
        extra_columns: Mapping[str, str],
        value_maps: Mapping[str, Mapping[str, str]] | None,
    ) -> RowRules:
        staged_of = {orig: staged for staged, orig in extra_columns.items()}
        nest: dict[str, list[tuple[str, str]]] = {}
        prefixes = sorted((preset.nest if preset else {}).items(), key=lambda kv: kv[0] == "*")
        for orig, staged in staged_of.items():
            for prefix, target in prefixes:
                if prefix == "*" or orig.startswith(prefix):
                    key = orig if prefix == "*" else orig[len(prefix) :]
                    nest.setdefault(target, []).append((key, staged))
                    break
        values: dict[str, dict[str, str]] = {
            f: dict(m) for f, m in (preset.values if preset else {}).items()
        }
        for f, m in (value_maps or {}).items():
            if f not in spec.names:
                raise MappingError(
                    f"--map-values names unknown {spec.name} field {f!r}; "
                    f"known: {', '.join(spec.names)}"
                )
            values.setdefault(f, {}).update(m)
        return cls(
            spec=spec,
            fallbacks={
                f: [staged_of[c] for c in cols if c in staged_of] for f, cols in fallbacks.items()
            },
            values=values,
            constants=dict(preset.constants) if preset else {},
            fill_down=_fill_key(spec, preset, staged_of),
            row_id=preset.row_id if preset else None,
            unquote=preset.unquote if preset else (),
            nest=nest,
            items=preset.items if preset and preset.items else None,
            item_columns=[
                staged
                for orig, staged in staged_of.items()
                if preset and preset.items and preset.items.matches(orig)
            ],
        )

    @property
    def active(self) -> bool:
        return bool(
            self.fallbacks
            or self.values
            or self.constants
            or self.fill_down
            or self.row_id
            or self.unquote
            or self.nest
            or (self.items is not None and bool(self.item_columns))
        )

    def apply_all(self, tables: Iterator[Any]) -> Iterator[Any]:
        """Apply to each chunk (objects with a ``table`` attribute) of a reader, in order."""
        for chunk in tables:
            chunk.table = self.apply(chunk.table)
            yield chunk

    def apply(self, t: pa.Table) -> pa.Table:
        if self.items is not None and self.item_columns:
            t = self._unpack_items(t)
        # fill-down first: a continuation row takes its record's values before any fallback
        # (a Shopify image row is its product's, not a product named by its handle)
        if self.fill_down and self.fill_down in t.column_names:
            t = self._fill_down(t)
        for f, staged in self.fallbacks.items():
            if f in t.column_names:
                t = _set(t, f, pc.coalesce(t[f], *[t[s] for s in staged if s in t.column_names]))
        for f in self.unquote:
            if f in t.column_names:
                t = _set(t, f, pc.replace_substring_regex(_text(t[f]), "^'", ""))
        for f, m in self.values.items():
            if f in t.column_names and m:
                col = _text(t[f])
                low = pc.utf8_lower(pc.utf8_trim_whitespace(col))
                idx = pc.index_in(low, value_set=pa.array(list(m), pa.string()))
                mapped = pc.take(pa.array(list(m.values()), pa.string()), idx)
                t = _set(t, f, pc.coalesce(mapped, col))
        for f, pairs in self.nest.items():
            keys = [k for k, _ in pairs]
            cols = [_text(t[c]).to_pylist() for _, c in pairs if c in t.column_names]
            docs = [
                orjson.dumps(
                    {k: v for k, v in zip(keys, vals, strict=True) if v is not None}
                ).decode()
                for vals in zip(*cols, strict=True)
            ]
            if len(cols) == len(pairs) and cols:
                t = _set(t, f, pa.array(docs, pa.string()))
        n = t.num_rows
        for f, v in self.constants.items():
            const = pa.array([v] * n, pa.string())
            t = _set(t, f, pc.coalesce(_text(t[f]), const) if f in t.column_names else const)
        if self.row_id:
            t = _set(t, self.row_id, self._row_ids(t))
        return t

    def _unpack_items(self, t: pa.Table) -> pa.Table:
        """One row per packed line item (a row without items stays, with no line)."""
        assert self.items is not None
        cols = [c for c in self.item_columns if c in t.column_names]
        if not cols or not t.num_rows:
            return t
        cells = zip(*[_text(t[c]).to_pylist() for c in cols], strict=True)
        take: list[int] = []
        lines: list[dict[str, str | None]] = []
        for i, row in enumerate(cells):
            items = self.items.unpack(row)
            for n, line in enumerate(items or [{}], start=1):
                take.append(i)
                lines.append({"line_number": str(n), **line} if items else {})
        t = t.take(pa.array(take, pa.int64()))
        for f in self.items.line_fields():
            given = _text(t[f]).to_pylist() if f in t.column_names else [None] * len(lines)
            vals = [
                g if g not in (None, "") else line.get(f)
                for g, line in zip(given, lines, strict=True)
            ]
            t = _set(t, f, pa.array(vals, pa.string()))
        return t

    def _fill_down(self, t: pa.Table) -> pa.Table:
        """Blank record-level fields take the value of the rows before with the same key."""
        key = self.fill_down
        assert key is not None
        line_fields = set(self.spec.line_fields)
        cols = [c for c in t.column_names if c in self.spec.names and c != key]
        cols = [c for c in cols if c not in line_fields]
        if not cols or not t.num_rows:
            return t
        carry = self._carry or {}
        keys = np.array([carry.get(key), *_text(t[key]).to_pylist()], dtype=object)
        n = len(keys)
        pos = np.arange(n)
        # a run is a stretch of consecutive rows with the same key (the carried row is row 0)
        new_run = np.ones(n, dtype=bool)
        new_run[1:] = (keys[1:] != keys[:-1]) | (keys[1:] == None)  # noqa: E711
        run_start = np.maximum.accumulate(np.where(new_run, pos, 0))
        last = {key: keys[-1]}
        for c in cols:
            vals = np.array([carry.get(c), *_text(t[c]).to_pylist()], dtype=object)
            have = vals != None  # noqa: E711
            src = np.maximum.accumulate(np.where(have, pos, -1))
            ok = (src >= run_start) & (src >= 0)
            filled = np.where(ok, vals[np.maximum(src, 0)], np.array(None, dtype=object))
            last[c] = filled[-1]
            t = _set(t, c, pa.array(filled[1:].tolist(), pa.string()))
        self._carry = last
        return t

    def _row_ids(self, t: pa.Table) -> pa.Array:
        names = [c for c in t.column_names if c in self.spec.names and c != self.row_id]
        rows = zip(*[_text(t[c]).to_pylist() for c in names], strict=True) if names else None
        lines = t["_line"].to_pylist() if "_line" in t.column_names else list(range(t.num_rows))
        out = []
        for line in lines:
            vals = next(rows) if rows is not None else ()
            raw = "\x1f".join("" if v is None else v for v in vals) + f"\x1e{line}"
            out.append("row-" + hashlib.md5(raw.encode()).hexdigest()[:16])
        return pa.array(out, pa.string())


def _fill_key(spec: KindSpec, preset: Preset | None, staged_of: Mapping[str, str]) -> str | None:
    """The column fill-down groups by: a canonical field, or a file column kept under extra."""
    if preset is None or not preset.fill_down:
        return None
    if preset.fill_down in spec.names:
        return preset.fill_down
    by_norm = {norm(orig): staged for orig, staged in staged_of.items()}
    if norm(preset.fill_down) not in by_norm:
        raise MappingError(
            f"preset {preset.name!r}: fill_down column {preset.fill_down!r} is not in the file"
        )
    return by_norm[norm(preset.fill_down)]


def _text(col: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    return col if pa.types.is_string(col.type) else pc.cast(col, pa.string())


def _set(t: pa.Table, name: str, values: Any) -> pa.Table:
    if name in t.column_names:
        return t.set_column(t.column_names.index(name), name, values)
    return t.append_column(name, values)


def presets_table(presets: Mapping[str, Preset]) -> list[dict[str, str]]:
    """One row per preset for listing: name, tool, kind, detected by, mapping."""
    rows = []
    for p in sorted(presets.values(), key=lambda p: (p.kind, p.name)):
        rows.append(
            {
                "name": p.name,
                "tool": p.tool,
                "kind": p.kind,
                "origin": "built-in" if p.builtin else "project",
                "detect": ", ".join(p.detect) if p.detect else "--preset only",
                "doc": p.doc,
                "mapping": p.describe(),
            }
        )
    return rows


__all__ = [
    "PackedItems",
    "Preset",
    "RowRules",
    "all_presets",
    "builtin_presets",
    "detect_preset",
    "get_preset",
    "parse_value_maps",
    "presets_table",
]

"""Column mapping: which column of the user's file feeds which canonical field."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from segone.exceptions import MappingError
from segone.ingest.kinds import KindSpec, norm


@dataclass(frozen=True)
class Const:
    """A mapping value: the same text for every row (a preset's constant)."""

    value: str


@dataclass(frozen=True)
class RowId:
    """A mapping value: an id derived from each row's content and line (exports without ids)."""


@dataclass(frozen=True)
class Unmapped:
    """A mapping value: no column feeds this field (a preset names every column it reads, so
    that a column such as Shopify's POS "Device ID" is not taken for an identifier by name)."""


MapValue = str | Const | RowId | Unmapped


@dataclass(frozen=True)
class ColumnMap:
    """``canonical`` maps canonical field -> source column; ``extra`` lists unmatched columns;
    ``generated`` lists fields that no column feeds but a preset fills (constants, row ids)."""

    canonical: dict[str, str]
    extra: list[str]
    generated: frozenset[str] = frozenset()

    def source_for(self, name: str) -> str | None:
        return self.canonical.get(name)


def resolve(
    spec: KindSpec,
    columns: Iterable[str],
    explicit: Mapping[str, MapValue] | None = None,
) -> ColumnMap:
    """Match ``columns`` of a file to ``spec``'s fields.

    Explicit entries win. Then a column whose normalised name equals a field's name, then one
    equal to a field's alias. A column that matches nothing is kept as an extra attribute.
    """
    columns = list(columns)
    given = dict(explicit or {})
    generated = frozenset(k for k, v in given.items() if isinstance(v, Const | RowId))
    named = {k: v for k, v in given.items() if isinstance(v, str)}
    skipped = {k for k, v in given.items() if isinstance(v, Unmapped)}
    unknown = [k for k in given if k not in spec.names]
    if unknown:
        raise MappingError(
            f"{spec.name}: mapping names unknown canonical field(s) {unknown}; "
            f"known: {', '.join(spec.names)}"
        )
    missing = [v for v in named.values() if v not in columns]
    if missing:
        raise MappingError(
            f"{spec.name}: mapped column(s) {missing} are not in the file; "
            f"its columns are: {', '.join(columns)}"
        )
    canonical: dict[str, str] = dict(named)
    used = set(named.values())
    taken = set(canonical) | generated | skipped
    by_norm: dict[str, list[str]] = {}
    for c in columns:
        if c not in used:
            by_norm.setdefault(norm(c), []).append(c)
    # exact canonical names first, aliases second, so "price" in a products file is price
    for pass_ in ("name", "alias"):
        for f in spec.fields:
            if f.name in taken:
                continue
            keys = [norm(f.name)] if pass_ == "name" else [norm(a) for a in f.aliases]
            for key in keys:
                cands = [c for c in by_norm.get(key, []) if c not in used]
                if len(cands) > 1:
                    raise MappingError(
                        f"{spec.name}: columns {cands} could all be {f.name!r}; "
                        f"say which with --map {f.name}=COLUMN"
                    )
                if cands:
                    canonical[f.name] = cands[0]
                    used.add(cands[0])
                    taken.add(f.name)
                    break
    extra = [c for c in columns if c not in used]
    return ColumnMap(canonical, extra, generated)


def require_columns(spec: KindSpec, cmap: ColumnMap, columns: list[str]) -> None:
    """A file-level check: a required field with no column at all fails the whole file."""
    have = set(cmap.canonical) | cmap.generated
    absent = [f.name for f in spec.fields if f.required and f.name not in have]
    if absent:
        hints = "; ".join(
            f"{name} (looked for: {', '.join([name, *spec.field(name).aliases][:6])})"
            for name in absent
        )
        raise MappingError(
            f"{spec.name} file has no column for required field(s) {hints}. Its columns are: "
            f"{', '.join(columns)}. "
            f"Map one with --map FIELD=COLUMN or [ingest.mapping.{spec.name}]."
        )
    if spec.any_of and not any(f in have for f in spec.any_of):
        raise MappingError(
            f"{spec.name} file has none of the columns {', '.join(spec.any_of)}; at least one is "
            f"needed to know who the row is about. Its columns are: {', '.join(columns)}."
        )


def parse_map_options(options: Iterable[str]) -> dict[str, str]:
    """Parse ``--map canonical=COLUMN`` options."""
    out: dict[str, str] = {}
    for opt in options:
        if "=" not in opt:
            raise MappingError(f"--map expects FIELD=COLUMN, got {opt!r}")
        k, v = opt.split("=", 1)
        out[k.strip()] = v.strip()
    return out

"""The visual rule builder: form rows -> a segment in the YAML rule language -> its size.

The YAML is the product: it is what a marketer saves into the project's ``segments/`` folder,
and it is counted exactly as ``segone segments preview FILE`` counts it (the file is parsed by
``load_catalogue`` with the project's catalogue and compiled by ``compile_rule``), so the number
shown while building is the number the CLI and the batch will find.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.datatypes as dt
import yaml

from segone.exceptions import SegoneError
from segone.schema import TS
from segone.segments.rules import OPS, Catalogue, compile_rule, describe
from segone.store.base import Warehouse

MAX_ROWS = 12


@dataclass
class Condition:
    attribute: str = ""
    op: str = "gte"
    value: str = ""


@dataclass
class Draft:
    name: str = "my_segment"
    description: str = ""
    combine: str = "all"
    conditions: list[Condition] = field(default_factory=lambda: [Condition()])


def attributes(attrs: Mapping[str, dt.DataType]) -> list[tuple[str, str]]:
    """(name, kind) of the profile attributes a condition may use; kind is number, text, flag,
    list or time (for the value hints of the form)."""
    out = []
    for name, t in sorted(attrs.items()):
        if name in ("customer_id", "as_of") or t.is_map() or t.is_struct():
            continue
        if t.is_array():
            kind = "list"
        elif t.is_boolean():
            kind = "flag"
        elif t.is_numeric():
            kind = "number"
        elif t.is_temporal():
            continue  # dates compare against dates the form cannot type well
        else:
            kind = "text"
        out.append((name, kind))
    return out


def draft_from_form(form: Mapping[str, Any]) -> Draft:
    """The draft in a submitted form (fields ``name``, ``description``, ``combine`` and
    ``attribute_i``, ``op_i``, ``value_i`` for each row ``i``)."""
    d = Draft(
        name=str(form.get("name", "")).strip() or "my_segment",
        description=str(form.get("description", "")).strip(),
        combine="any" if form.get("combine") == "any" else "all",
        conditions=[],
    )
    for i in range(MAX_ROWS):
        if f"attribute_{i}" not in form:
            continue
        d.conditions.append(
            Condition(
                str(form.get(f"attribute_{i}", "")).strip(),
                str(form.get(f"op_{i}", "eq")).strip(),
                str(form.get(f"value_{i}", "")).strip(),
            )
        )
    return d


def _scalar(text: str) -> Any:
    """A typed value as YAML reads it (``3`` a number, ``true`` a flag, else text)."""
    try:
        v = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return v if isinstance(v, int | float | bool | str) else text


def rule_obj(d: Draft) -> dict[str, Any] | None:
    """The rule as the YAML language writes it; None when no row is complete."""
    items: list[dict[str, Any]] = []
    for c in d.conditions:
        if not c.attribute:
            continue
        if c.op not in OPS:
            raise SegoneError(f"unknown comparison {c.op!r}; use one of {', '.join(OPS)}")
        if c.op == "is_null":
            value: Any = c.value.lower() not in ("false", "no", "0")
        elif c.op in ("in", "not_in"):
            value = [_scalar(v.strip()) for v in c.value.split(",") if v.strip()]
        elif c.value == "":
            continue  # a row still being typed
        else:
            value = _scalar(c.value)
        items.append({c.attribute: {c.op: value}})
    if not items:
        return None
    return items[0] if len(items) == 1 else {d.combine: items}


def to_yaml(d: Draft) -> str | None:
    rule = rule_obj(d)
    if rule is None:
        return None
    seg: dict[str, Any] = {"name": d.name}
    if d.description:
        seg["description"] = d.description
    seg["rule"] = rule
    return yaml.safe_dump({"segments": [seg]}, sort_keys=False, allow_unicode=True)


@dataclass(frozen=True)
class Preview:
    yaml: str | None
    count: int | None
    total: int
    rule: str = ""
    error: str | None = None


def preview(wh: Warehouse, project: Any, d: Draft, as_of: datetime) -> Preview:
    """The draft's YAML and how many profiles it holds as of ``as_of`` (the last build)."""
    from segone.segments.batch import with_event_counts

    total = wh.count("profiles")
    try:
        text = to_yaml(d)
        if text is None:
            return Preview(None, None, total)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{d.name}.yaml"
            path.write_text(text, encoding="utf-8")
            cat = _catalogue_with(project, wh, path, d.name)
        seg = cat[d.name]
        one = Catalogue({seg.name: seg})
        cutoff = ibis.literal(as_of, type=TS)
        t = with_event_counts(wh, one, cutoff)
        n = int(wh.execute(t.filter(compile_rule(seg.rule, t, cat)).count()))
        return Preview(text, n, total, describe(seg.rule))
    except SegoneError as exc:
        return Preview(to_yaml_or_none(d), None, total, error=_short(str(exc)))


def _catalogue_with(project: Any, wh: Warehouse, draft: Path, name: str) -> Catalogue:
    """The project's catalogue with the draft added; a file this builder saved earlier under
    the same name is left out (saving again replaces it), any other definition of the name is
    the usual "defined twice" error."""
    from segone.segments import load_catalogue, profile_attributes
    from segone.segments.builtin import builtin_catalogue

    folder = Path(project.root) / "segments"
    files = [
        f
        for f in sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml"))
        if not (f.name == f"{name}.yaml" and _ours(f))
    ]
    attrs = profile_attributes(wh)
    return load_catalogue(
        [*files, draft], attrs, base=builtin_catalogue(attrs, project.settings.segments)
    )


HEADER = "# written by the segone dashboard's rule builder\n"


def _ours(path: Path) -> bool:
    try:
        return path.read_text(encoding="utf-8").startswith(HEADER)
    except OSError:
        return False


def to_yaml_or_none(d: Draft) -> str | None:
    try:
        return to_yaml(d)
    except SegoneError:
        return None


def _short(msg: str) -> str:
    """An error without the temporary file's path (the user never saw that file)."""
    if ".yaml:" in msg:
        msg = msg.split(".yaml:", 1)[1]
        msg = msg.split(":", 1)[1].strip() if ":" in msg else msg
    return msg


def save(project_dir: Path, d: Draft) -> Path:
    """Write the draft to ``segments/<name>.yaml`` of the project (refusing to overwrite a
    file the builder did not write)."""
    text = to_yaml(d)
    if text is None:
        raise SegoneError("add at least one complete condition before saving")
    if not d.name.replace("_", "").replace("-", "").isalnum():
        raise SegoneError("segment names use letters, digits, '_' and '-'")
    path = Path(project_dir) / "segments" / f"{d.name}.yaml"
    if path.exists() and not _ours(path):
        raise SegoneError(f"segments/{path.name} exists and was not written by the builder")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + text, encoding="utf-8")
    return path

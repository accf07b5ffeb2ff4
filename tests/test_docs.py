"""The documentation covers every table column, input field, command and setting."""

from __future__ import annotations

import re
from pathlib import Path

from segone.cli import app
from segone.config import DEFAULT_TOML
from segone.ingest.kinds import KINDS
from segone.schema import TABLES

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    nxt = text.find("\n### ", start + len(heading))
    return text[start : nxt if nxt != -1 else None]


def test_every_column_of_every_table_is_documented():
    text = (DOCS / "data-model.md").read_text()
    for table, cols in TABLES.items():
        sec = _section(text, f"### `{table}`")
        for c in cols:
            assert f"| `{c.name}` |" in sec, f"{table}.{c.name} is not in docs/data-model.md"


def test_every_input_field_and_alias_is_documented():
    text = (DOCS / "data-model.md").read_text()
    for kind, spec in KINDS.items():
        sec = _section(text, f"### {kind}\n")
        for f in spec.fields:
            row = re.search(rf"\| `{f.name}` \|[^\n]*", sec)
            assert row, f"{kind}.{f.name}"
            for a in f.aliases:
                assert a in row.group(0), f"alias {a} of {kind}.{f.name}"


def test_every_command_is_documented():
    text = (DOCS / "cli.md").read_text()
    names = [c.name or c.callback.__name__ for c in app.registered_commands]
    names += [g.name for g in app.registered_groups]
    for name in names:
        assert f"segone {name}" in text, name


def test_every_setting_is_documented():
    text = (DOCS / "configuration.md").read_text()
    for key in re.findall(r"^#?\s*([a-z_]+) = ", DEFAULT_TOML, flags=re.M):
        if key in ("order_id", "ts"):  # example mapping entries
            continue
        assert f" {key}`" in text, key


def test_readme_quick_start_is_two_commands():
    readme = (DOCS.parent / "README.md").read_text()
    block = readme.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make demo", "make test"]


def test_every_profile_feature_is_documented(wh):
    from datetime import UTC, datetime

    import ibis

    from segone.identity import resolve
    from segone.pipeline.build import profiles_expr
    from segone.schema import TS

    resolve(wh)
    cols = profiles_expr(wh, ibis.literal(datetime.now(UTC), type=TS)).columns
    text = (DOCS / "profiles.md").read_text()
    for c in cols:
        assert f"| `{c}` |" in text, f"profile column {c} is not in docs/profiles.md"

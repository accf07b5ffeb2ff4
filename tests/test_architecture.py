"""The import graph keeps the layers of ARCHITECTURE.md: arrows only point down, no cycles.

A small AST scan of ``segone/`` (no import-linter dependency): every ``import segone...`` is an
arrow from the importing module to the imported one. Imports under ``if TYPE_CHECKING:`` are
annotations only and are not arrows. Imports inside functions are arrows too (they run), so a
lazy import does not hide a wrong dependency; the few that are allowed are listed in ``KNOWN``
with the reason, and a test fails when one of them is gone so that the list stays true.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "segone"

#: The layers, lowest first: a module may import modules of its own unit and of lower layers.
#: The first matching prefix names a module's unit (so ``segone.online.store`` is storage while
#: the rest of ``segone.online`` is the real-time serving engine above ``segone.live``).
LAYERS: list[tuple[int, str]] = [
    (0, "segone.exceptions"),
    (0, "segone.schema"),
    (0, "segone.exprs"),
    (0, "segone.signing"),
    (1, "segone.store"),
    (1, "segone.online.store"),
    (2, "segone.status"),
    (2, "segone.datasets"),
    (3, "segone.config"),
    (4, "segone.identity"),
    (5, "segone.ingest"),
    (6, "segone.profiles"),
    (7, "segone.segments"),
    (8, "segone.models"),
    (9, "segone.decisions"),
    (10, "segone.live"),
    (11, "segone.online"),
    (12, "segone.pipeline"),
    (13, "segone.parts"),
    (14, "segone.project"),
    (15, "segone.campaigns"),
    (16, "segone.api"),
    (17, "segone.web"),
    (18, "segone.notebook"),
    (19, "segone.demo"),
    (20, "segone.cli"),
    (21, "segone"),
]

#: Upward arrows that are allowed, each with its reason. Keep this short: fix, do not list.
KNOWN: dict[tuple[str, str], str] = {
    # config assembles ``Settings`` from the frozen settings dataclass each subsystem owns;
    # those modules import nothing above the store, so reading settings pulls in no engine
    ("segone.config", "segone.identity.graph"): "IdentitySettings lives with the graph",
    ("segone.config", "segone.models.settings"): "ModelSettings",
    ("segone.config", "segone.segments.builtin"): "SegmentSettings of the built-in segments",
    ("segone.config", "segone.segments.lifecycle"): "LifecycleSettings",
    # erasure is the one operation that must reach every store and both paths; it sits in
    # identity because ingestion refuses erased people's records (``erased_lines``) — to be
    # split into a low part (hashes, refusal) and a pipeline-level "erase everywhere" that
    # finds a person's customers in the warehouse
    ("segone.identity.erase", "segone.profiles.lookup"): "erase: find a person's customers",
    # the online store finds a person's quarantined messages with identity's pure-Python
    # tracer (no Ibis, no engine); a function-level import of a leaf module
    ("segone.online.store.erasure", "segone.identity.traces"): "quarantine search on erasure",
    # the API and the CLI report the package version
    ("segone.api.app", "segone"): "segone.__version__",
    ("segone.cli._app", "segone"): "segone.__version__ (segone --version)",
}


@dataclass(frozen=True)
class Arrow:
    src: str
    dst: str
    line: int
    lazy: bool  # inside a function


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _resolve(target: str, names: list[str]) -> Iterator[str]:
    """``from segone.x import y`` is an arrow to ``segone.x.y`` when that is a module."""
    subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES]
    if subs:
        yield from subs
    if len(subs) < len(names):
        yield target


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def _arrows(mod: str, path: Path) -> Iterator[Arrow]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]

    def visit(node: ast.AST, lazy: bool) -> Iterator[Arrow]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for n in child.orelse:
                    yield from visit(n, lazy)
                continue
            inner = lazy or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                for a in child.names:
                    if a.name == "segone" or a.name.startswith("segone."):
                        yield Arrow(mod, a.name, child.lineno, lazy)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.rsplit(".", child.level - 1)[0] if child.level > 1 else package
                    target = f"{base}.{child.module}" if child.module else base
                else:
                    target = child.module or ""
                if target == "segone" or target.startswith("segone."):
                    for dst in _resolve(target, [a.name for a in child.names]):
                        yield Arrow(mod, dst, child.lineno, lazy)
            yield from visit(child, inner)

    yield from visit(tree, False)


ARROWS = [a for mod, path in MODULES.items() for a in _arrows(mod, path) if a.dst != mod]


def unit(mod: str) -> tuple[int, str]:
    for layer, prefix in LAYERS:
        if mod == prefix or mod.startswith(prefix + "."):
            return layer, prefix
    raise AssertionError(f"{mod} is in no layer: add it to LAYERS and ARCHITECTURE.md")


def test_every_module_has_a_layer() -> None:
    for mod in MODULES:
        unit(mod)


def test_arrows_point_down() -> None:
    wrong = []
    for a in ARROWS:
        (ls, us), (ld, ud) = unit(a.src), unit(a.dst)
        if us != ud and ld >= ls and (a.src, a.dst) not in KNOWN:
            how = "inside a function" if a.lazy else "at import time"
            wrong.append(f"{a.src}:{a.line} imports {a.dst} ({how}): {us} may not use {ud}")
    assert not wrong, "imports against the layers of ARCHITECTURE.md:\n" + "\n".join(wrong)


def test_known_exceptions_are_still_needed() -> None:
    seen = {(a.src, a.dst) for a in ARROWS}
    gone = [f"{s} -> {d}" for s, d in KNOWN if (s, d) not in seen]
    assert not gone, "remove these from KNOWN (the import is gone):\n" + "\n".join(gone)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    return out


def test_no_cycles_between_units() -> None:
    edges: dict[str, set[str]] = {}
    for a in ARROWS:
        if (a.src, a.dst) in KNOWN:
            continue
        us, ud = unit(a.src)[1], unit(a.dst)[1]
        if us != ud:
            edges.setdefault(us, set()).add(ud)
    assert not _cycles(edges)


#: Module-level cycles inside one unit that are allowed, each with its reason.
KNOWN_MODULE_CYCLES: dict[frozenset[str], str] = {}


def test_no_cycles_between_modules() -> None:
    """Module to module, counting only imports that run when the module loads: such a cycle
    makes the import order matter (and its half-initialised module the failure)."""
    edges: dict[str, set[str]] = {}
    for a in ARROWS:
        if not a.lazy and a.dst in MODULES:
            edges.setdefault(a.src, set()).add(a.dst)
    found = [c for c in _cycles(edges) if frozenset(c) not in KNOWN_MODULE_CYCLES]
    assert not found, f"import cycles between modules: {found}"


@pytest.mark.parametrize("path", ["ARCHITECTURE.md"], ids=lambda p: p)
def test_architecture_document_names_every_unit(path: str) -> None:
    text = (ROOT.parent / path).read_text(encoding="utf-8")
    missing = [
        p for _, p in LAYERS if p != "segone" and f"`{p.removeprefix('segone.')}" not in text
    ]
    assert not missing, f"{path} does not describe {missing}"

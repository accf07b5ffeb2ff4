"""One exception tree: every error class segone defines lives in segone.exceptions, under the
tree its docstring draws, and the old import locations still work."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

import segone.exceptions as exc

PACKAGE = Path(exc.__file__).resolve().parent


def _classes_defined(path: Path) -> list[tuple[str, list[str]]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        (node.name, [ast.unparse(b) for b in node.bases])
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
    ]


def test_no_error_class_is_defined_outside_exceptions_py():
    bases_of_errors = {"SegoneError", *exc.__all__}
    stray = [
        f"{path.relative_to(PACKAGE.parent)}: {name}"
        for path in PACKAGE.rglob("*.py")
        if path.name != "exceptions.py"
        for name, bases in _classes_defined(path)
        if any(b.split(".")[-1] in bases_of_errors for b in bases)
    ]
    assert stray == []


def _drawing() -> list[tuple[int, str]]:
    """(column, class name) of each line of the tree in the module docstring."""
    tree = (exc.__doc__ or "").split("::", 1)[1].split("\n\n")[1]
    out = []
    for line in tree.splitlines():
        m = re.search(r"[A-Z]\w+", line)
        if m:
            out.append((m.start(), m.group(0)))
    return out


def test_the_docstring_draws_every_class_under_its_parent():
    drawing = _drawing()
    assert sorted(name for _, name in drawing) == sorted(exc.__all__)
    for i, (col, name) in enumerate(drawing):
        cls = getattr(exc, name)
        assert issubclass(cls, exc.SegoneError)
        if i == 0:
            assert name == "SegoneError"
            continue
        parent = next(n for c, n in reversed(drawing[:i]) if c < col)
        assert cls.__mro__[1] is getattr(exc, parent) or getattr(exc, parent) in cls.__bases__


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("segone.identity.erase", "NotFoundError"),
        ("segone.identity.erase", "AmbiguousError"),
        ("segone.identity.probabilistic", "MatchingInputError"),
        ("segone.segments.rules", "RuleError"),
        ("segone.online.store", "OnlineStoreError"),
        ("segone.decisions", "DecisionError"),
        ("segone.models.click", "ClickModelError"),
        ("segone.models.nextproducts", "NextProductsError"),
        ("segone.models.ope", "OPEInputError"),
        ("segone.models.preference", "PreferenceError"),
        ("segone.models.taste", "TasteInputError"),
    ],
)
def test_old_locations_re_export_the_one_class(module, name):
    cls = getattr(importlib.import_module(module), name)
    assert cls is getattr(exc, name)


def test_not_found_is_one_idea_with_one_name():
    assert issubclass(exc.NotFoundError, LookupError)
    assert not hasattr(exc, "NotFound")


def test_not_fitted_error_is_also_scikit_learns():
    from sklearn.exceptions import NotFittedError as SklearnNotFitted

    assert issubclass(exc.NotFittedError, SklearnNotFitted)
    assert issubclass(exc.NotFittedError, exc.ModelError)

"""The one tree of errors segone raises; catch ``SegoneError`` to catch them all.

::

    SegoneError
    ├── ConfigError            segone.toml or a setting is wrong
    ├── ProjectError           no project where one is expected, or one already exists
    ├── StoreError             the warehouse engine failed (carries the failing SQL)
    ├── IngestError            a file cannot be ingested at all (row problems go to quarantine)
    │   ├── UnknownKindError   KIND is not one of the canonical kinds
    │   ├── FileFormatError    the file cannot be read in the format asked for
    │   └── MappingError       a column mapping names columns that do not exist or clash
    └── ModelError             a predictive model cannot be fitted or used
        ├── ModelInputError    the data given to a model is unusable (also a ValueError)
        └── NotFittedError     a model was used before fit (also scikit-learn's)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sklearn.exceptions import NotFittedError as _SklearnNotFittedError


class SegoneError(Exception):
    """Base class of every error segone raises on purpose."""


class ConfigError(SegoneError):
    """A configuration file or setting is invalid."""


class ProjectError(SegoneError):
    """The project directory is missing, or already initialised."""


class StoreError(SegoneError):
    """The warehouse engine failed; ``sql`` holds the statement when there was one."""

    def __init__(self, message: str, sql: str | None = None) -> None:
        super().__init__(message if sql is None else f"{message}\n-- failing SQL:\n{sql}")
        self.sql = sql


class IngestError(SegoneError):
    """A whole file cannot be ingested. Bad rows never raise: they go to quarantine."""


class UnknownKindError(IngestError):
    """The KIND given to ingest is not a canonical kind."""


class FileFormatError(IngestError):
    """The file cannot be read as the format asked for (or detected)."""


class MappingError(IngestError):
    """A column mapping is inconsistent with the file or the canonical model."""


class ModelError(SegoneError):
    """A predictive model cannot be fitted or used."""


class ModelInputError(ModelError, ValueError):
    """The data given to a model is unusable (wrong shape, values, or too little of it)."""


if TYPE_CHECKING:

    class NotFittedError(ModelError, _SklearnNotFittedError):
        """A model was used before ``fit`` (also scikit-learn's NotFittedError)."""


def __getattr__(name: str) -> Any:
    # NotFittedError is made on first use: importing scikit-learn takes over a second, which
    # every command that never fits a model (ingest, profile, ...) would otherwise pay
    if name != "NotFittedError":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from sklearn.exceptions import NotFittedError as sklearn_not_fitted

    class NotFittedError(ModelError, sklearn_not_fitted):
        """A model was used before ``fit`` (also scikit-learn's NotFittedError)."""

    NotFittedError.__module__ = __name__
    NotFittedError.__qualname__ = name
    globals()[name] = NotFittedError
    return NotFittedError

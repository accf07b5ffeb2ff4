"""The one tree of errors segone raises; catch ``SegoneError`` to catch them all.

::

    SegoneError
    ├── ConfigError              segone.toml or a setting is wrong
    ├── ProjectError             no project where one is expected, or one already exists
    ├── StoreError               the warehouse engine failed (carries the failing SQL)
    │   └── WarehouseBusyError   another process (a build) is writing the warehouse file
    ├── OnlineStoreError         the online store cannot be opened or used
    ├── IngestError              a file cannot be ingested at all (row problems go to quarantine)
    │   ├── UnknownKindError     KIND is not one of the canonical kinds
    │   ├── FileFormatError      the file cannot be read in the format asked for
    │   └── MappingError         a column mapping names columns that do not exist or clash
    ├── NotFoundError            nobody (or nothing) is known by that identifier (also LookupError)
    ├── AmbiguousError           an identifier names several customers where one was meant
    ├── RuleError                a segment definition is invalid (names file, line and problem)
    ├── MatchingInputError       records cannot be matched as given (also a ValueError)
    ├── IdentityDecisionError    a manual split / link / unlink is malformed (also a ValueError)
    ├── DecisionError            a decision or feedback request is invalid (also a ValueError)
    ├── CampaignError            a campaign file is invalid, or no campaign has that name
    ├── AudienceError            an audience cannot be built (unknown segment, channel, column)
    ├── HoldoutError             a holdout or arm split cannot be made
    ├── MessageError             a message template cannot be compiled or rendered
    ├── RunError                 a campaign run cannot go ahead (no transport for a real send)
    ├── MeasureError             a campaign report cannot be made (no run, bad conversion)
    ├── SimulationError          no ground truth to simulate a campaign against
    ├── DestinationError         a destination is misconfigured (also a ValueError)
    ├── UserError                a dashboard user cannot be added or removed
    └── ModelError               a predictive model cannot be fitted or used
        ├── ModelInputError      the data given to a model is unusable (also a ValueError)
        │   ├── AssociationError     an association-rule hyperparameter or input is invalid
        │   ├── ClickModelError      features or labels of a click model are inconsistent
        │   ├── NextProductsError    a recommender hyperparameter or input is invalid
        │   ├── OPEInputError        logs or target policy of an off-policy estimate disagree
        │   ├── PreferenceError      a preference-model hyperparameter or input is invalid
        │   └── TasteInputError      a taste model cannot work with its inputs
        └── NotFittedError       a model was used before fit (also scikit-learn's)

Every class is defined here and nowhere else; the modules that raise one import it from here
(``segone.segments.rules.RuleError`` is this module's ``RuleError``). One idea, one name: the
online engine's old ``NotFound`` is ``NotFoundError``.

Importing this module costs nothing: scikit-learn (whose ``NotFittedError`` ours also is) is
imported the first time ``NotFittedError`` is asked for, not before.
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


class WarehouseBusyError(StoreError):
    """Another process holds the warehouse file (DuckDB: one writer, or many readers)."""


class OnlineStoreError(SegoneError):
    """The online store could not be opened or used (bad URL, unreachable server, ...)."""


class IngestError(SegoneError):
    """A whole file cannot be ingested. Bad rows never raise: they go to quarantine."""


class UnknownKindError(IngestError):
    """The KIND given to ingest is not a canonical kind."""


class FileFormatError(IngestError):
    """The file cannot be read as the format asked for (or detected)."""


class MappingError(IngestError):
    """A column mapping is inconsistent with the file or the canonical model."""


class NotFoundError(SegoneError, LookupError):
    """Nobody (no customer, no live person) or nothing (no decision, no erasure) is known by the
    identifier given; the API answers it with a 404."""


class AmbiguousError(SegoneError):
    """The identifier names several customers, and the caller did not say to erase them all."""


class RuleError(SegoneError):
    """A segment definition is invalid; the message names the file, the line and the problem."""


class MatchingInputError(SegoneError, ValueError):
    """The records cannot be matched as given (no or duplicate ``unique_id``, too few fields)."""


class IdentityDecisionError(SegoneError, ValueError):
    """A manual identity decision (split, link, unlink) is malformed."""


class DecisionError(SegoneError, ValueError):
    """A decision or feedback request is invalid: bad context, unknown kind, item not shown."""


class CampaignError(SegoneError):
    """A campaign file that is not valid, or a campaign that does not exist."""


class AudienceError(SegoneError):
    """An audience that cannot be built: an unknown segment, channel, column or share."""


class HoldoutError(SegoneError):
    """A holdout or arm split that cannot be made (shares outside [0, 1), no arm)."""


class MessageError(SegoneError):
    """A template that cannot be compiled or rendered."""


class RunError(SegoneError):
    """A campaign run that cannot go ahead (no transport configured for a real send, …)."""


class MeasureError(SegoneError):
    """A report that cannot be made: no run of the campaign, a bad conversion definition, …"""


class SimulationError(SegoneError):
    """No ground truth to simulate against, or a project not built from it."""


class DestinationError(SegoneError, ValueError):
    """A destination is misconfigured (unknown kind or key, missing secret, bad column)."""


class UserError(SegoneError):
    """A dashboard user could not be added or removed (bad name, too short a password, …)."""


class ModelError(SegoneError):
    """A predictive model cannot be fitted or used."""


class ModelInputError(ModelError, ValueError):
    """The data given to a model is unusable (wrong shape, values, or too little of it)."""


class AssociationError(ModelInputError):
    """A hyperparameter or an input of the association rules is invalid."""


class ClickModelError(ModelInputError):
    """The features or labels given to a click model are inconsistent."""


class NextProductsError(ModelInputError):
    """A hyperparameter or an input of the recommender is invalid."""


class OPEInputError(ModelInputError):
    """The logs or the target policy given to an estimator are inconsistent."""


class PreferenceError(ModelInputError):
    """A hyperparameter or an input of the preference model is invalid."""


class TasteInputError(ModelInputError):
    """A taste model was given hyperparameters or inputs it cannot work with."""


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


__all__ = [
    "AmbiguousError",
    "AssociationError",
    "AudienceError",
    "CampaignError",
    "ClickModelError",
    "ConfigError",
    "DecisionError",
    "DestinationError",
    "FileFormatError",
    "HoldoutError",
    "IdentityDecisionError",
    "IngestError",
    "MappingError",
    "MatchingInputError",
    "MeasureError",
    "MessageError",
    "ModelError",
    "ModelInputError",
    "NextProductsError",
    "NotFittedError",
    "NotFoundError",
    "OPEInputError",
    "OnlineStoreError",
    "PreferenceError",
    "ProjectError",
    "RuleError",
    "RunError",
    "SegoneError",
    "SimulationError",
    "StoreError",
    "TasteInputError",
    "UnknownKindError",
    "UserError",
    "WarehouseBusyError",
]

"""The read side the engine and the writer share: what the last publish loaded (``Runtime``)
and who an identifier belongs to (``person_of``)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from segone.config import Settings
from segone.online.store import OnlineStore, Tx
from segone.segments.rules import Catalogue, RuleError

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """What the server reads from the last publish: reloaded when a build publishes again."""

    version: str | None = None
    catalogue: Catalogue = field(default_factory=Catalogue)
    items: Any = field(default_factory=dict)  # a decisions.CatalogueIndex once refreshed
    median_gap_days: float | None = None
    decision_settings: Any = None
    checked: float = 0.0


def load_runtime(
    store: OnlineStore, settings: Settings, previous: Runtime, *, force: bool = False
) -> Runtime:
    """``previous``, or a new runtime when a build has published since (checked at most once
    a second unless ``force``), so the server follows builds without a restart. A runtime never
    loaded (``checked`` 0) is always loaded: a project not built yet still has its segment
    files' real-time catalogue, in the writer process as in the server."""
    force = force or previous.checked == 0.0
    if not force and time.monotonic() - previous.checked < 1.0:
        return previous
    with store.read() as tx:
        version = tx.meta.get("published_version")
        if version == previous.version and not force:
            previous.checked = time.monotonic()
            return previous
        items = tx.docs.all("catalogue")
        gap = tx.meta.get("median_gap_days")
    from segone.decisions import CatalogueIndex, DecisionSettings

    return Runtime(
        version=version,
        catalogue=_catalogue(settings),
        items=CatalogueIndex(items),
        decision_settings=DecisionSettings.from_settings(settings),
        median_gap_days=float(gap) if gap else None,
        checked=time.monotonic(),
    )


def _catalogue(settings: Settings) -> Catalogue:
    from segone.live.realtime import live_catalogue

    folder = settings.root / "segments"
    files = sorted(folder.glob("*.y*ml")) if folder.is_dir() else []
    try:
        return live_catalogue(files, settings.segments)
    except RuleError as exc:
        # serve the built-in segments rather than nothing; the error names file and line
        log.warning("segment files not used in real time: %s", exc)
        return live_catalogue((), settings.segments)


def person_of(tx: Tx, identifier: str, settings: Settings) -> str | None:
    """The person an identifier (``kind:value`` or a bare value) belongs to, if known."""
    from segone.live.identity import candidates

    found = tx.identity.lookup(candidates(identifier, settings.identity))
    people = sorted(set(found.values()))
    return people[0] if people else None

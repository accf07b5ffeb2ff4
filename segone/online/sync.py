"""Moved to ``segone.pipeline.publish`` (pickup and publish) and ``segone.pipeline.build``
(``build_project``); this shim keeps the old import path working (the lead removes it)."""

from typing import Any


def __getattr__(name: str) -> Any:
    from segone.pipeline import build, publish

    if name in ("build_project", "ProjectBuild"):
        return getattr(build, name)
    return getattr(publish, name)

"""The progress display of ``segone build``: its stages, what each produced, elapsed and ETA.

A build of a large store runs for minutes; one spinner says nothing about where it is. Each
stage gets a line on stderr when it ends (its time and counts), and a live line shows the stage
running, the time so far and an estimate of the time left. The estimate comes from the previous
build of the same project (``.segone/build-times.json``): builds of one project take similar
times, and nothing better is known before the work is done.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from segone.cli._common import err

TIMES_FILE = Path(".segone") / "build-times.json"


def _clock(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 60}:{s % 60:02d}"


class BuildDisplay:
    """Hands ``status`` (outer steps) and ``progress`` (build stages) to ``build_project``."""

    def __init__(self, root: Path) -> None:
        self.path = root / TIMES_FILE
        self.previous: dict[str, float] = {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            self.previous = {str(k): float(v) for k, v in data.get("stages", {}).items()}
        except (OSError, ValueError, AttributeError):
            pass
        self.times: dict[str, float] = {}
        self.start = time.perf_counter()
        self.stage: str | None = None
        self.stage_start = self.start
        self._progress: Any = None
        self._task: Any = None

    # ----------------------------------------------------------------- the live line
    def __enter__(self) -> BuildDisplay:
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        console = err.get()
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[eta]}"),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        )
        self._progress.__enter__()
        self._task = self._progress.add_task("starting", eta="")
        return self

    def __exit__(self, *exc: object) -> None:
        self._finish_stage("")
        self._progress.__exit__(*exc)
        if exc[0] is None:
            self._save()

    def eta(self) -> str:
        """Time left by the previous build's stage times (empty when there was none)."""
        if not self.previous:
            return ""
        elapsed = time.perf_counter() - self.start
        left = max(sum(self.previous.values()) - elapsed, 0.0)
        return f"about {_clock(left)} left" if left else "finishing"

    def _update(self, text: str) -> None:
        self._progress.update(self._task, description=text, eta=self.eta())

    # ----------------------------------------------------------------- the hooks
    @contextmanager
    def status(self, message: str) -> Iterator[None]:
        """An outer step (pick up the server's events, build, publish)."""
        self._finish_stage("")
        self._update(message)
        t, inner = time.perf_counter(), len(self.times)
        yield
        self._finish_stage("")
        if len(self.times) == inner:  # a step without stages of its own: it is one
            self.times[message] = time.perf_counter() - t
            self._line(message, self.times[message], "")

    def progress(self, stage: str, detail: str) -> None:
        """A build stage starts; ``detail`` is what the one before produced."""
        self._finish_stage(detail)
        self.stage, self.stage_start = stage, time.perf_counter()
        self._update(f"build: {stage}")

    def _finish_stage(self, detail: str) -> None:
        if self.stage is None:
            return
        took = time.perf_counter() - self.stage_start
        self.times[self.stage] = took
        self._line(self.stage, took, detail)
        self.stage = None

    def _line(self, what: str, took: float, detail: str) -> None:
        tail = f"  {detail}" if detail else ""
        err.print(f"  done {what:<36} {took:7.1f}s{tail}", highlight=False, soft_wrap=True)

    def _save(self) -> None:
        try:
            self.path.parent.mkdir(exist_ok=True)
            total = time.perf_counter() - self.start
            self.path.write_text(
                json.dumps({"seconds": round(total, 3), "stages": self.times}, indent=1),
                encoding="utf-8",
            )
        except OSError:  # a read-only project directory: no estimate next time, nothing worse
            pass

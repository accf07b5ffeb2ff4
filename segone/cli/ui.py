"""``segone ui``: open the dashboard — start ``segone serve`` for the project when nothing
answers on its address, print the URL, and open the browser (``webbrowser``)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from segone.cli._common import (
    EXIT_FAILED,
    ProjectOpt,
    console,
    err,
    fail,
    open_project,
)

ui_app = typer.Typer(help="Open the dashboard (starting `segone serve` when it is not running).")


def _answers(url: str, timeout: float = 1.0) -> bool:
    """True when a segone server answers ``/health`` at ``url``."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


@ui_app.callback(invoke_without_command=True)
def ui(
    project: ProjectOpt = Path("."),
    host: Annotated[str | None, typer.Option(help="Address ([server] host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port ([server] port, default 8321).")] = None,
    no_browser: Annotated[
        bool, typer.Option("--no-browser", help="Print the URL; do not open a browser.")
    ] = False,
    detach: Annotated[
        bool,
        typer.Option(
            "--detach", help="Leave the server it starts running in the background and return."
        ),
    ] = False,
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for a server it starts to answer.")
    ] = 120.0,
) -> None:
    """Open the dashboard of the project's server. When nothing answers on the address,
    `segone serve` is started first (until Ctrl-C, or in the background with --detach)."""
    proj = open_project(project)
    s = proj.settings.server
    host = host or s.host
    port = port or s.port
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    url = f"http://{shown}:{port}"
    proc: subprocess.Popen[bytes] | None = None
    if not _answers(url):
        log = proj.root / ".segone" / "serve.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "segone.cli", "serve", "-p", str(proj.root)]
        cmd += ["--host", host, "--port", str(port)]
        with log.open("ab") as out:
            proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=detach,  # a detached server outlives this terminal's Ctrl-C
            )
        err.print(f"starting segone serve (pid {proc.pid}, log {log})")
        deadline = time.monotonic() + wait
        while not _answers(url):
            if proc.poll() is not None:
                tail = log.read_text(encoding="utf-8", errors="replace")[-1500:]
                fail(f"segone serve exited with {proc.returncode}:\n{tail}", EXIT_FAILED)
            if time.monotonic() > deadline:
                proc.terminate()
                fail(f"segone serve did not answer on {url} within {wait:.0f} s (see {log})")
            time.sleep(0.3)
    console.print(f"dashboard: {url}/", highlight=False)
    if not no_browser:
        import webbrowser

        if not webbrowser.open(f"{url}/"):
            err.print("no browser found: open the URL above")
    if proc is None or detach:
        if proc is not None:
            console.print(
                f"server running in the background (pid {proc.pid}); stop: kill {proc.pid}"
            )
        return
    console.print("serving; Ctrl-C stops the server")
    try:
        proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait(timeout=20)

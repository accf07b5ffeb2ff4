"""Run the API: ``serve`` (uvicorn, uvloop + httptools, one process) and ``background_server``
(the same server on a thread, for tests and embedding).

``python -m segone.api.server --project DIR [--host H] [--port P] [--online-url URL]`` runs
``serve`` for a project (``segone serve`` does the same).
"""

from __future__ import annotations

import argparse
import logging
import logging.config
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from segone.api.app import create_app
from segone.api.logs import LOGGING_CONFIG
from segone.config import Settings
from segone.online.engine import Engine
from segone.online.store import OnlineStore

log = logging.getLogger("segone.api")


def uvicorn_config(
    app: Any, host: str, port: int, *, configure_logging: bool = True, **kw: Any
) -> uvicorn.Config:
    """The one uvicorn configuration of segone (the benchmark serves its baseline with it too).

    ``configure_logging`` installs ``LOGGING_CONFIG`` (process-wide: not for embedding)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,  # ours (segone.api.access) redacts paths and omits client addresses
        log_config=LOGGING_CONFIG if configure_logging else None,
        server_header=False,
        **kw,
    )


def open_store(settings: Settings, online_url: str | None = None) -> OnlineStore:
    """The configured online store (or the one at ``online_url``), tables created."""
    return OnlineStore.open(online_url or settings.server.online_url, root=settings.root)


def publish_unpublished_build(settings: Settings, store: OnlineStore) -> bool:
    """Publish the warehouse's last build to an online store that has never had one.

    A build publishes to the online store only when the store exists, so the first ``segone
    build`` of a project (before any ``segone serve``) published nothing, and the server would
    serve an empty store until the next build. Builds after the server started publish as they
    go, and the running server follows them within a second (``Engine.refresh``). Skipped, with
    a warning, when a build holds the warehouse (that build publishes when it ends)."""
    with store.read() as tx:
        if tx.meta.get("published_version") is not None:
            return False
    if not settings.warehouse_path.exists():
        return False
    from segone.exceptions import StoreError
    from segone.pipeline.publish import publish
    from segone.project import Project

    try:
        wh = Project(settings).warehouse(read_only=True)
    except StoreError as exc:
        log.warning("the last build is not published yet (the warehouse is busy): %s", exc)
        return False
    try:
        if "profiles" not in wh.tables():
            return False
        result = publish(wh, store, settings)
    finally:
        wh.close()
    log.info("published the last build to the online store: %s", result.summary())
    return True


def serve(
    settings: Settings,
    host: str | None = None,
    port: int | None = None,
    online_url: str | None = None,
    extend: Callable[[Any, Settings, Any], None] | None = None,
) -> None:
    """Serve the API in the foreground until SIGINT/SIGTERM (one process: the online store has
    one writer, and group commit batches every request of the process). The last build is
    published first if it never was (``publish_unpublished_build``)."""
    store = open_store(settings, online_url)
    try:
        publish_unpublished_build(settings, store)
        app = create_app(settings, Engine(store, settings), freeze_gc=True, extend=extend)
        config = uvicorn_config(app, host or settings.server.host, port or settings.server.port)
        uvicorn.Server(config).run()
    finally:
        store.close()


@contextmanager
def background_server(app: Any, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``app`` on a thread for the duration of the block; yields its base URL.

    ``port=0`` picks a free port. The lifespan (engine start/stop) runs as in ``serve``; the
    process's logging configuration is left alone.
    """
    server = uvicorn.Server(uvicorn_config(app, host, port, configure_logging=False))
    thread = threading.Thread(target=server.run, name="segone-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the API server did not start (see the log)")
        time.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m segone.api.server", description=__doc__)
    p.add_argument("--project", "-p", default=".", help="project directory (segone.toml)")
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--online-url", default=None, help="sqlite:///file.db or postgresql://...")
    args = p.parse_args(argv)
    logging.config.dictConfig(LOGGING_CONFIG)
    serve(Settings.load(args.project), args.host, args.port, args.online_url)


if __name__ == "__main__":
    main()

"""Real ``segone serve`` processes for the tests that kill them: start one on a free port and
wait until it answers, stop it, find its writer process, wait for a process to be gone.

Shared by the durability tests (``test_api_durability``: one server, SQLite or PostgreSQL) and
the two-server PostgreSQL test (``test_pg_multiserver``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(root: Path, port: int, log: Path, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """``python -m segone.api.server`` for the project at ``root`` (its writer process beside
    it), with ``env`` added to the environment; does not wait (see ``ready``). Its log goes to
    ``log`` (a file, not a pipe: a full pipe would stall the server)."""
    cmd = [sys.executable, "-m", "segone.api.server", "--project", str(root), "--port"]
    with log.open("ab") as f:
        return subprocess.Popen(
            [*cmd, str(port)],
            stdout=subprocess.DEVNULL,
            stderr=f,
            env={**os.environ, **env},
        )


def ready(
    proc: subprocess.Popen[bytes], port: int, log: Path, *, within: float = 240.0
) -> subprocess.Popen[bytes]:
    """``proc`` once its ``/health`` answers 200 (killed, and an error, past ``within`` s)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"the server exited ({proc.returncode}):\n{log.read_text()[-3000:]}"
            )
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"the server did not start within {within:.0f} s")


def start_server(
    root: Path, port: int, log: Path, env: Mapping[str, str], *, within: float = 240.0
) -> subprocess.Popen[bytes]:
    """A server started and answering (``launch`` then ``ready``)."""
    return ready(launch(root, port, log, env), port, log, within=within)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (a clean shutdown), SIGKILL after 20 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def writer_of(server_pid: int) -> int:
    """The pid of the writer process ``serve`` started (``python -m segone.online.writer``)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == server_pid and b"segone.online.writer" in cmdline:
                return int(entry.name)
        time.sleep(0.05)
    raise AssertionError(f"no writer process under the server {server_pid}")


def gone(pid: int, within: float = 10.0) -> bool:
    """Whether process ``pid`` has exited (or is a zombie) within ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":  # exited, not yet reaped
            return True
        time.sleep(0.05)
    return False

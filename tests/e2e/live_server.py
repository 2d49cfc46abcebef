"""A real Tournesol server for end-to-end tests: uvicorn in its own process, on a free port of
127.0.0.1, against a database of the test's choosing (tests/e2e/conftest.py gives each test
module a fresh migrated one per backend through the ``live_server`` fixture).

    with run_server(database_url) as server:
        requests.get(server.url("/login"))
        with unit_of_work(server.factory) as session: ...   # the server's own database

Commits are real here (not the rolled-back transaction of integration tests): the server and
the test see each other's writes.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from tournesol.db import make_engine, make_session_factory

STARTUP_SECONDS = 30.0


class ServerFailed(RuntimeError):
    """The server did not start, or died: the message holds what it printed."""


@dataclass(frozen=True)
class LiveServer:
    """A running server: where it answers, its database and a session factory on it."""

    base_url: str
    database_url: str
    factory: sessionmaker[Session]
    engine: Engine
    process: subprocess.Popen[bytes]
    log_path: Path

    def url(self, path: str = "/") -> str:
        return self.base_url + path

    def log(self) -> str:
        """What the server printed so far (warnings and errors: access logs are off)."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def run_server(
    database_url: str,
    *,
    workers: int = 1,
    env: Mapping[str, str] | None = None,
    startup_seconds: float = STARTUP_SECONDS,
) -> Iterator[LiveServer]:
    """Start uvicorn on ``create_app()`` with ``TOURNESOL_DATABASE_URL=database_url`` (already
    migrated), wait until it answers, yield it, stop it. ``env`` adds settings. Raises
    ServerFailed with the server's output if it does not come up."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    environment = {
        **os.environ,
        "TOURNESOL_DATABASE_URL": database_url,
        "TOURNESOL_SECRET_KEY": secrets.token_urlsafe(48),
        **(env or {}),
    }
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "tournesol.web.app:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    with tempfile.NamedTemporaryFile(prefix="tournesol-server-", suffix=".log", delete=False) as f:
        log_path = Path(f.name)
    engine = make_engine(database_url)
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT)
    server = LiveServer(
        base_url, database_url, make_session_factory(engine), engine, process, log_path
    )
    try:
        _wait_until_up(server, startup_seconds)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        engine.dispose()
        log_path.unlink(missing_ok=True)


def _wait_until_up(server: LiveServer, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ServerFailed(f"the server exited ({server.process.returncode}):\n{server.log()}")
        try:
            with urllib.request.urlopen(server.url("/login"), timeout=2) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            pass
        time.sleep(0.1)
    raise ServerFailed(f"the server did not answer within {seconds:.0f} s:\n{server.log()}")

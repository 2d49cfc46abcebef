"""End-to-end fixtures: ``live_server``, a real uvicorn process per test module and backend,
on a fresh migrated database (SQLite file or PostgreSQL schema).

    def test_something(live_server: LiveServer) -> None:
        httpx.get(live_server.url("/login"))
        with unit_of_work(live_server.factory) as session: ...

The tests of one module share the server and its database: they must not count on an empty
one (make your own rows, or look for them by what you gave them). For other settings or
several workers, use ``tests.e2e.live_server.run_server`` directly.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import FreshDatabase
from tests.e2e.live_server import LiveServer, run_server


@pytest.fixture(scope="module")
def live_server(backend: str, fresh_databases: FreshDatabase) -> Iterator[LiveServer]:
    with run_server(fresh_databases.url(backend)) as server:
        yield server

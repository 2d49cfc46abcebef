"""The PostgreSQL pool of ``db.make_engine`` keeps a connection for each request a server
process serves at once: connections given back are reused, not closed and opened again (each
opening costs PostgreSQL a process)."""

from __future__ import annotations

from contextlib import ExitStack

from sqlalchemy import text

from tests.conftest import FreshDatabase
from tournesol.db import make_engine

IN_FLIGHT = 12  # requests one server process may serve at once under the API load test


def test_connections_of_a_busy_moment_are_kept_for_the_next_one(
    fresh_databases: FreshDatabase,
) -> None:
    engine = make_engine(fresh_databases.url("postgresql", migrate=False))
    try:
        backends = []
        for _ in range(2):  # two busy moments, one after the other
            with ExitStack() as stack:
                conns = [stack.enter_context(engine.connect()) for _ in range(IN_FLIGHT)]
                backends.append(
                    {c.execute(text("SELECT pg_backend_pid()")).scalar() for c in conns}
                )
        assert len(backends[0]) == IN_FLIGHT
        assert backends[1] == backends[0]  # the same PostgreSQL processes: none reopened
    finally:
        engine.dispose()

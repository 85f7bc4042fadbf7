"""A real PostgreSQL server for the tests in this folder: one per test session (per
pytest-xdist worker), a fresh database per test. See server.py for how it runs."""
from __future__ import annotations

import pytest

from expkit import db

from .server import PostgresServer


@pytest.fixture(scope="session")
def postgres_server():
    """Started on first use (~0.5 s on tmpfs); stopped and its folder removed at the end
    of the session whatever the tests did (a hard kill stops it through pdeathsig)."""
    server = PostgresServer.start()
    try:
        yield server
    finally:
        db.dispose()
        server.stop()


@pytest.fixture
def pg_url(postgres_server) -> str:
    """A fresh, empty database for one test, as a URL over the server's unix socket
    (trusted: no password in it); dropped afterwards."""
    url = postgres_server.create_database()
    yield url.render_as_string(hide_password=True).replace(":***", "")
    db.dispose()
    postgres_server.drop_database(url)


@pytest.fixture
def pg_index(pg_url, runs_dir, monkeypatch) -> str:
    """The run index, registry, score log and feedback of ``runs_dir`` on PostgreSQL."""
    monkeypatch.setenv("EXPKIT_DB", pg_url)
    return pg_url

"""Fixtures: one PostgreSQL cluster (when the run targets PostgreSQL) and one dpvault server per session.

``DPVAULT_TEST_DATABASE=postgresql`` runs the whole suite against PostgreSQL; the default is SQLite.
Tests that need their own server (restart, settings) start one with ``make_server``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import Env, PostgresServer, Server

BACKEND = os.environ.get("DPVAULT_TEST_DATABASE", "sqlite").lower()


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer | None]:
    if BACKEND != "postgresql":
        yield None
        return
    # Not under pytest's tmp dir: that is private to root, and the server runs as ``postgres``.
    root = Path(tempfile.mkdtemp(prefix="dpvault-pg-"))
    pg = PostgresServer(root)
    pg.start()
    yield pg
    pg.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def source_pg() -> Iterator[PostgresServer]:
    """A PostgreSQL server whose databases the tests protect (whatever backend holds dpvault's state)."""
    root = Path(tempfile.mkdtemp(prefix="dpvault-src-"))
    pg = PostgresServer(root)
    pg.start()
    yield pg
    pg.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def make_server(
    tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer | None
) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def make(
        *args: str, data_dir: Path | None = None, database_url: str | None = None, start: bool = True
    ) -> Server:
        if database_url is None and postgres is not None:
            database_url = postgres.create_database()
        server = Server(
            data_dir or tmp_path_factory.mktemp("dpvault"), database_url=database_url, args=list(args)
        )
        started.append(server)
        return server.start() if start else server

    yield make
    for server in started:
        server.terminate()
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def server(make_server: Callable[..., Server]) -> Server:
    return make_server()


@pytest.fixture(scope="session")
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


@pytest.fixture
def env(client: httpx.Client) -> Env:
    return Env(client).create()

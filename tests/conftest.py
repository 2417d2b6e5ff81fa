"""Fixtures: one PostgreSQL cluster and one dpvault server per session.

``DPVAULT_TEST_DATABASE=postgresql`` runs the servers and stores of the suite on PostgreSQL (and only the
tests that reach them: see ``pytest_collection_modifyitems``); the default is SQLite.
Tests that need their own server (restart, settings) start one with ``make_server``.

Under pytest-xdist (``./scripts/test`` runs ``-n``), a session is one worker process: each worker
has its own PostgreSQL cluster -- dpvault's state databases and the databases the tests protect
live in the same one -- and its own shared dpvault server. Tests name what they create uniquely
(``Env`` uses random resource groups and vaults), so they do not depend on each other or on order.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import Env, PostgresServer, Server

BACKEND = os.environ.get("DPVAULT_TEST_DATABASE", "sqlite").lower()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresServer]:
    """This worker's one PostgreSQL cluster, started on first use."""
    # Not under pytest's tmp dir: that is private to root, and the server runs as ``postgres``.
    root = Path(tempfile.mkdtemp(prefix="dpvault-pg-"))
    pg = PostgresServer(root)
    pg.start()
    yield pg
    pg.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres(request: pytest.FixtureRequest) -> PostgresServer | None:
    """Where dpvault keeps its state when the run targets PostgreSQL (a database per server)."""
    return request.getfixturevalue("pg_cluster") if BACKEND == "postgresql" else None


@pytest.fixture(scope="session")
def source_pg(pg_cluster: PostgresServer) -> PostgresServer:
    """A PostgreSQL server whose databases the tests protect (whatever backend holds dpvault's state)."""
    return pg_cluster


@pytest.fixture(scope="session")
def make_server(
    tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer | None
) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def make(
        *args: str,
        data_dir: Path | None = None,
        database_url: str | None = None,
        start: bool = True,
        environ: dict[str, str] | None = None,
    ) -> Server:
        if database_url is None and postgres is not None:
            database_url = postgres.create_database()
        server = Server(
            data_dir or tmp_path_factory.mktemp("dpvault"),
            database_url=database_url,
            args=list(args),
            environ=environ,
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


# -- object stores: Azurite (Azure Blob) and moto's S3 server, one of each per session, started lazily


@pytest.fixture(scope="session")
def azurite() -> Iterator[Any]:
    from tests.objectstores import Azurite

    with Azurite() as server:
        yield server


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[Any]:
    from tests.objectstores import MotoS3

    with MotoS3() as server:
        yield server


@pytest.fixture
def vault_store_args(request: pytest.FixtureRequest) -> Callable[..., tuple[list[str], dict[str, str]]]:
    """``kind`` (local, azure or s3) -> the ``serve``/``worker`` arguments and environment of a
    fresh vault store of that kind: a new container or bucket (with S3 Object Lock if asked)."""

    def make(kind: str, *, object_lock: bool = False) -> tuple[list[str], dict[str, str]]:
        from tests.objectstores import unique

        if kind == "local":
            return [], {}
        if kind == "azure":
            server = request.getfixturevalue("azurite")
            container = server.make_container(unique("vault"))
            return ["--vault-store", f"azure://{container}/dpvault"], server.environ()
        if kind == "s3":
            server = request.getfixturevalue("moto_s3")
            bucket = server.make_bucket(unique("vault"), object_lock=object_lock)
            return ["--vault-store", f"s3://{bucket}/dpvault"], server.environ()
        raise ValueError(kind)

    return make


# -- the PostgreSQL pass runs only what the state store can change ---------------------------------

STATE_STORE_FIXTURE = "postgres"  # every server the tests start on the run's backend comes through it


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "state_store: the test's outcome depends on the state store's backend (found dynamically)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On ``DPVAULT_TEST_DATABASE=postgresql``, deselect the tests that never touch the run's state
    store (pure units, engines, object stores, servers on SQLite of their own): the SQLite pass ran
    them, and a second run on PostgreSQL would repeat it identically. What reaches ``postgres`` (the
    shared server, ``make_server``, the store tests) or is marked ``state_store`` runs."""
    if BACKEND != "postgresql":
        return
    kept, dropped = [], []
    for item in items:
        uses_store = STATE_STORE_FIXTURE in getattr(item, "fixturenames", ()) or item.get_closest_marker(
            "state_store"
        )
        (kept if uses_store else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept

"""A connection a secret describes never borrows dpvault's own credentials: a PGPASSWORD or a
~/.pgpass in dpvault's environment (perhaps for its state database) does not log a secret without
a password into that server, neither through psycopg nor through pg_dump."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import psycopg
import pytest

from dpvault.engines.postgres import PostgresEngine, find_tools
from dpvault.engines.postgres.engine import connect_kwargs
from dpvault.errors import UserError
from dpvault.model.instances.schema import Datasource
from tests.support import PostgresServer


def test_a_secret_without_password_does_not_use_dpvaults_own(
    source_pg: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = {"host": "127.0.0.1", "port": str(source_pg.port), "user": "postgres", "dbname": "postgres"}
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"*:*:*:*:{source_pg.password}\n")
    passfile.chmod(0o600)
    monkeypatch.setenv("PGPASSWORD", source_pg.password)
    monkeypatch.setenv("PGPASSFILE", str(passfile))

    # the environment alone would log in: the test is not vacuous
    with psycopg.connect(host="127.0.0.1", port=source_pg.port, user="postgres", dbname="postgres") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)

    async def connect() -> None:
        conn = await psycopg.AsyncConnection.connect(**connect_kwargs(params, timeout=5))
        await conn.close()

    with pytest.raises(psycopg.OperationalError) as raised:
        asyncio.run(connect())
    assert "password" in str(raised.value).lower()

    tools = find_tools()
    if tools is None:
        pytest.skip("pg_dump is not installed")
    with pytest.raises(UserError) as failed:
        asyncio.run(
            PostgresEngine(tools).validate(params, Datasource(resourceID="/db", resourceName="postgres"))
        )
    assert failed.value.code == "UserErrorDatabaseAuthenticationFailed"
    assert os.environ["PGPASSWORD"] == source_pg.password  # dpvault's own environment is left alone

"""A restore job re-run after a crash (its lease expired) finishes its own half-done work, and never
takes over anything it did not create: the Restorer against a real PostgreSQL server and a real
vault directory, with the crashed attempt's leftovers laid down exactly as it leaves them. (The point
is a vault-format-1 point, laid down as format 1 writes them.)"""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from dpvault.clock import Clock
from dpvault.datastores import LocalDatastore
from dpvault.engines.base import Params
from dpvault.engines.postgres import PostgresEngine, find_tools
from dpvault.engines.postgres.restore import marker as _marker
from dpvault.engines.registry import Engines
from dpvault.errors import UserError
from dpvault.protection.credentials import Credentials
from dpvault.protection.restore import RestoreJobs
from dpvault.protection.restore_files import FileRestorer
from dpvault.secrets import SecretResolver
from dpvault.services import Services
from dpvault.settings import Settings
from dpvault.store import RecoveryPointRow, Store
from dpvault.vault import format as vault_format
from dpvault.vault.keys import VaultKeys
from dpvault.vault.points import RecoveryPoints
from tests.integration.test_protection import make_sample_database
from tests.integration.test_restore import database_exists, table_state
from tests.support import PostgresServer

JOB = str(uuid.uuid4())


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


class Restorer:
    """The restore paths a job takes, on real parts: a point into a database (the engine), or as files."""

    def __init__(self, jobs: RestoreJobs, engine: PostgresEngine, vault: Path) -> None:
        self.jobs, self.engine, self.vault = jobs, engine, vault

    async def to_database(self, rp: RecoveryPointRow, params: Params, *, owner: str) -> dict[str, str]:
        return await self.jobs.to_datasource(self.engine, rp, params, owner=owner)

    async def release_database(self, params: Params, owner: str) -> None:
        await self.engine.release(params, owner)

    async def to_files(self, rp: RecoveryPointRow, target: dict[str, Any], *, owner: str) -> dict[str, str]:
        return await self.jobs.files.to_files(rp, target, owner=owner)

    def release_files(self, target: dict[str, Any], owner: str) -> None:
        self.jobs.files.release(target, owner)


@pytest.fixture
def point(tmp_path: Path, source_pg: PostgresServer) -> tuple[Restorer, RecoveryPointRow, str]:
    """A Restorer and a recovery point holding a real pg_dump of a sample database."""
    tools = find_tools()
    if tools is None:
        pytest.skip("pg_dump is not installed")
    db = make_sample_database(source_pg, customers=50, orders=80)
    datastore = LocalDatastore(tmp_path / "vault")
    key = f"v/i/{uuid.uuid4()}.dump"
    path = tmp_path / "vault" / key
    path.parent.mkdir(parents=True)
    env = {"PATH": os.environ["PATH"], "PGPASSWORD": source_pg.password}
    with open(path, "wb") as out:
        subprocess.run([tools.pg_dump, "-Fc", "-h", "127.0.0.1", "-p", str(source_pg.port), "-U", "postgres", db],
                       stdout=out, check=True, env=env)  # fmt: skip
    data = path.read_bytes()
    rp = RecoveryPointRow.from_mapping({
        "id": str(uuid.uuid4()), "instance_key": "i", "vault_key": "v", "time": 1.0, "tag": "Default",
        "rule_name": "r", "policy_name": "p", "policy_version": "1.0", "data_store": "VaultStore",
        "object_key": key, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "expiry": None,
        "details": b"{}", "state": "available", "created_at": 1.0,
    })  # fmt: skip
    manifest = vault_format.Manifest(
        format=1, recoveryPointId=rp.id, instance="i", sha256=rp.sha256, size=rp.size,
        engine="pg_dump -Fc", pgDumpVersion=tools.version, tables=2,
    )  # fmt: skip

    async def make() -> Restorer:
        store = await Store.open(f"sqlite:///{tmp_path / 'state.db'}")
        await vault_format.write_manifest(datastore, key, manifest, writer="fixture")
        svc = Services(Settings(data_dir=tmp_path), store, Clock(), wake_worker=lambda: None)
        points = RecoveryPoints(
            store, datastore, grace=30, keys=VaultKeys(store, datastore, os.urandom(32), None)
        )
        engine = PostgresEngine(tools)
        files = FileRestorer(points, [tmp_path / "restores"])
        jobs = RestoreJobs(svc, Engines([engine]), Credentials(svc, SecretResolver([])), points, files)
        return Restorer(jobs, engine, tmp_path / "vault")

    return _run(make()), rp, db


def _params(pg: PostgresServer, database: str) -> dict[str, str]:
    return {"host": "127.0.0.1", "port": str(pg.port), "user": "postgres", "password": pg.password,
            "dbname": database}  # fmt: skip


def test_a_rerun_replaces_the_half_restored_database_it_created(
    point: tuple[Restorer, RecoveryPointRow, str], source_pg: PostgresServer
) -> None:
    restorer, rp, db = point
    target = f"rerun_{uuid.uuid4().hex[:8]}"
    # the crashed attempt: created the database (with its marker) and restored part of it
    source_pg.sql("postgres", f"CREATE DATABASE {target}")
    source_pg.sql("postgres", f"COMMENT ON DATABASE {target} IS '{_marker(JOB)}'")
    source_pg.sql(target, "CREATE TABLE customers (id int); INSERT INTO customers VALUES (1)")
    details = _run(restorer.to_database(rp, _params(source_pg, target), owner=JOB))
    assert details["CreatedDatabase"] == "true"
    assert table_state(source_pg, target) == table_state(source_pg, db)
    # the mark stays until the job's completion is committed (a crash before that re-runs again)
    marker = f"SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '{target}'"
    assert source_pg.sql("postgres", marker) == [(_marker(JOB),)]
    again = _run(restorer.to_database(rp, _params(source_pg, target), owner=JOB))
    assert again["CreatedDatabase"] == "true" and table_state(source_pg, target) == table_state(source_pg, db)
    _run(restorer.release_database(_params(source_pg, target), JOB))
    assert source_pg.sql("postgres", marker) == [(None,)]
    with pytest.raises(UserError) as raised:  # now it is the user's database
        _run(restorer.to_database(rp, _params(source_pg, target), owner=JOB))
    assert raised.value.code == "UserErrorTargetDatabaseNotEmpty"


def test_another_jobs_or_a_users_database_is_never_taken_over(
    point: tuple[Restorer, RecoveryPointRow, str], source_pg: PostgresServer
) -> None:
    restorer, rp, _ = point
    for comment in (None, _marker(str(uuid.uuid4()))):
        target = f"theirs_{uuid.uuid4().hex[:8]}"
        source_pg.sql("postgres", f"CREATE DATABASE {target}")
        if comment:
            source_pg.sql("postgres", f"COMMENT ON DATABASE {target} IS '{comment}'")
        source_pg.sql(target, "CREATE TABLE precious (id int); INSERT INTO precious VALUES (42)")
        with pytest.raises(UserError) as raised:
            _run(restorer.to_database(rp, _params(source_pg, target), owner=JOB))
        assert raised.value.code == "UserErrorTargetDatabaseNotEmpty"
        assert database_exists(source_pg, target)
        assert source_pg.sql(target, "SELECT id FROM precious") == [(42,)]


def test_a_rerun_finishes_its_own_files_and_refuses_anything_else(
    point: tuple[Restorer, RecoveryPointRow, str], tmp_path: Path
) -> None:
    restorer, rp, _ = point
    directory = tmp_path / "restores" / "out"
    directory.mkdir(parents=True)
    target = {"targetDetails": {"url": f"file://{directory}", "filePrefix": "nightly"}}
    # the crashed attempt linked its staging file into place, then died before the checksum file
    staged = directory / f".nightly.dump.{JOB}.partial"
    staged.write_bytes((restorer.vault / rp.object_key).read_bytes())
    os.link(staged, directory / "nightly.dump")
    details = _run(restorer.to_files(rp, target, owner=JOB))
    assert details["SHA256"] == rp.sha256
    assert (directory / "nightly.dump.sha256").read_text() == f"{rp.sha256}  nightly.dump\n"
    # a crash after the files but before the job's completion commits: the re-run still succeeds
    assert _run(restorer.to_files(rp, target, owner=JOB))["SHA256"] == rp.sha256
    restorer.release_files(target, JOB)
    assert sorted(p.name for p in directory.iterdir()) == ["nightly.dump", "nightly.dump.sha256"]

    # a file of the same name that is not this job's: refused, untouched
    with pytest.raises(UserError) as raised:
        _run(restorer.to_files(rp, target, owner=str(uuid.uuid4())))
    assert raised.value.code == "UserErrorTargetFileExists"

    # a checksum name planted as a symlink never redirects the write
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    (directory / "weekly.dump.sha256").symlink_to(victim)
    with pytest.raises(UserError) as raised:
        _run(restorer.to_files(rp, {**target, "targetDetails": {**target["targetDetails"], "filePrefix": "weekly"}},
                               owner=JOB))  # fmt: skip
    assert raised.value.code == "UserErrorTargetFileExists"
    assert victim.read_text() == "keep me" and not (directory / "weekly.dump").exists()

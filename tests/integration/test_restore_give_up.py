"""A whole-server restore that runs out of attempts (every worker running it crashed) is given up:
``RestoreJobs.give_up`` removes what the job left in the mapped target server (the databases and
roles carrying its mark), touches nothing else, and fails the job. If the target cannot be reached
(no mapping, nothing listening, the instance gone), the give-up still finishes.

Everything is real: the state store (SQLite), the local secret store with the source mapping, the
flexible-server engine, and a PostgreSQL server of the test's own as the target. The crashed
attempts' leftovers are created by hand, marked the same way a restore marks them."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest
from cryptography.fernet import Fernet

from dpvault.clock import Clock
from dpvault.datastores import LocalDatastore
from dpvault.engines.postgres import find_tools
from dpvault.engines.postgres.flexible import FlexibleServerEngine
from dpvault.engines.postgres.server_restore import marker
from dpvault.engines.registry import Engines
from dpvault.jobs.worker import Claimed
from dpvault.model import backup_jobs, payloads
from dpvault.model.instances.rules import decode_instance
from dpvault.protection.credentials import Credentials
from dpvault.protection.restore import RestoreJobs
from dpvault.protection.restore_files import FileRestorer
from dpvault.protection.sources import Sources, parse_id
from dpvault.secrets import SecretResolver
from dpvault.secrets.local import LocalSecretStore
from dpvault.services import Services
from dpvault.settings import Settings
from dpvault.store import BackupJobRow, Store
from dpvault.vault.keys import VaultKeys
from dpvault.vault.points import RecoveryPoints
from tests.integration.test_flexible_restore import databases, into_server, marks, roles, server_id
from tests.integration.test_flexible_server import flex_instance
from tests.support import SUB, PostgresServer

VAULT = f"/subscriptions/{SUB}/resourceGroups/rg-giveup/providers/Microsoft.DataProtection/backupVaults/v1"
INSTANCE = f"{VAULT}/backupInstances/pgflex"


@pytest.fixture(scope="module")
def target_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this module's own (roles are per server: "exactly" means something)."""
    pg = PostgresServer(Path(tempfile.mkdtemp(prefix="dpvault-giveup-")))
    pg.start()
    yield pg
    pg.stop()
    shutil.rmtree(pg.root, ignore_errors=True)


@pytest.fixture
def target(target_server: PostgresServer) -> Iterator[PostgresServer]:
    """The server, emptied again after each test (only ``postgres`` and its superuser left)."""
    yield target_server
    for name in databases(target_server) - {"postgres"}:
        target_server.sql("postgres", f'DROP DATABASE "{name}" WITH (FORCE)')
    for name in roles(target_server) - {"postgres"}:
        target_server.sql("postgres", f'DROP ROLE "{name}"')


@dataclass
class World:
    """RestoreJobs put together the way ``runtime.py`` does it, with one flexible-server instance."""

    store: Store
    svc: Services
    mappings: LocalSecretStore
    jobs: RestoreJobs

    async def map(self, resource_id: str, value: str) -> None:
        """What ``dpvault sources set <id>`` stores (the default tenant owns every subscription)."""
        tenant = self.svc.settings.tenant_id
        await self.mappings.set(parse_id(resource_id).key, value, tenant=tenant, now=time.time())

    async def restore_job(self) -> str:
        """A Restore job InProgress, as the restore request records it."""
        async with self.store.read() as tx:
            instance = await tx.resource(INSTANCE.lower())
        assert instance is not None
        bi = decode_instance(instance.body)

        async def write(tx: Any) -> str:
            return await backup_jobs.create(
                tx, now=self.svc.now(), subscription=SUB, vault_key=VAULT.lower(), vault_name="v1",
                instance_key=INSTANCE.lower(), instance_id=bi.id, instance=bi.properties,
                operation="Restore", category="Restore", user_triggered=True,
            )  # fmt: skip

        return await self.store.transact(write)

    async def give_up(self, job: str, target_id: str) -> None:
        restore = payloads.Restore(job=job, instance=INSTANCE.lower(), rp=str(uuid.uuid4()),
                                   target=into_server(target_id))  # fmt: skip
        await self.jobs.give_up(Claimed(1, "worker-1", 6, restore), "its worker stopped while running it")

    async def rerun(self, job: str, target_id: str) -> None:
        """The job claimed again within its attempts (its worker died): ``restore`` runs."""
        restore = payloads.Restore(job=job, instance=INSTANCE.lower(), rp=str(uuid.uuid4()),
                                   target=into_server(target_id))  # fmt: skip
        await self.jobs.restore(Claimed(1, "worker-2", 2, restore))

    async def job(self, job: str) -> BackupJobRow:
        async with self.store.read() as tx:
            row = await tx.backup_job(job)
        assert row is not None
        return row

    async def close(self) -> None:
        await self.store.close()


async def world(tmp: Path) -> World:
    store = await Store.open(f"sqlite:///{tmp / 'state.db'}")
    svc = Services(Settings(data_dir=tmp), store, Clock(), wake_worker=lambda: None)
    mappings = LocalSecretStore(store, Fernet(Fernet.generate_key()))
    credentials = Credentials(svc, SecretResolver([mappings]))
    datastore = LocalDatastore(tmp / "vault")
    points = RecoveryPoints(
        store, datastore, grace=30, keys=VaultKeys(store, datastore, os.urandom(32), None)
    )
    jobs = RestoreJobs(
        svc, Engines([FlexibleServerEngine(find_tools())]), credentials, points,
        FileRestorer(points, [tmp / "restores"]), None, Sources(credentials, mappings),
    )  # fmt: skip
    # the backup instance of a flexible server (no credentials: it is reached through its mapping)
    body = flex_instance(f"{VAULT}/backupPolicies/flexpolicy", server_id("src"))
    body |= {
        "id": INSTANCE,
        "name": "pgflex",
        "type": "Microsoft.DataProtection/backupVaults/backupInstances",
    }

    async def write(tx: Any) -> None:
        now = svc.now()
        await tx.insert_resource(
            key=INSTANCE.lower(), kind="backupInstance", subscription=SUB.lower(),
            rg_key=VAULT.lower().split("/providers/")[0], parent_key=VAULT.lower(), name="pgflex",
            body=msgspec.json.encode(body), state="Succeeded", active_operation=None, revision=1,
            created_at=now, updated_at=now,
        )  # fmt: skip

    await store.transact(write)
    return World(store, svc, mappings, jobs)


def leftovers(pg: PostgresServer, job: str, other: str) -> None:
    """What the crashed attempts of ``job`` left (marked as its), beside what is not its."""
    for name, comment in (
        ("crm", marker(job)),  # created by the job, half restored
        ("shop", marker(job)),
        ("billing", marker(other)),  # another restore job's, still running
        ("mine", None),  # the user's
    ):
        pg.sql("postgres", f'CREATE DATABASE "{name}"')
        pg.sql(name, "CREATE TABLE items (id int); INSERT INTO items VALUES (1), (2)")
        if comment:
            pg.sql("postgres", f"COMMENT ON DATABASE \"{name}\" IS '{comment}'")
    # roles the job created: one plain, one whose own comment (from the point) waits behind the mark
    pg.sql("postgres", "CREATE ROLE app_owner NOLOGIN; CREATE ROLE app_reader LOGIN")
    pg.sql("postgres", f"COMMENT ON ROLE app_owner IS '{marker(job)}'")
    pg.sql("crm", "ALTER TABLE items OWNER TO app_owner")  # it owns what was restored so far
    pg.sql("postgres", f"COMMENT ON ROLE app_reader IS E'{marker(job)}\\nreads the sales schema'")
    pg.sql("postgres", f"CREATE ROLE other_role NOLOGIN; COMMENT ON ROLE other_role IS '{marker(other)}'")
    pg.sql("postgres", "CREATE ROLE user_role NOLOGIN; COMMENT ON ROLE user_role IS 'the user''s'")


def test_giving_up_drops_exactly_the_jobs_databases_and_roles_and_fails_the_job(
    tmp_path: Path, target: PostgresServer
) -> None:
    target_id = server_id("giveup")
    other = str(uuid.uuid4())

    async def scenario() -> None:
        w = await world(tmp_path)
        try:
            await w.map(target_id, target.url("postgres"))
            job = await w.restore_job()
            leftovers(target, job, other)
            assert {"crm", "shop", "billing", "mine"} <= databases(target)
            assert marks(target) == ["app_owner", "app_reader", "billing", "crm", "other_role", "shop"]
            before_dbs, before_roles = databases(target), roles(target)

            # a session still open in one of them (a crashed worker's pg_restore, not yet timed out)
            with psycopg.connect(target.url("crm"), autocommit=True):
                await w.give_up(job, target_id)

            assert databases(target) == before_dbs - {"crm", "shop"}
            assert roles(target) == before_roles - {"app_owner", "app_reader"}
            assert marks(target) == ["billing", "other_role"]  # the other job's marks stay its own
            assert target.sql("mine", "SELECT count(*) FROM items") == [(2,)]
            assert target.sql("billing", "SELECT count(*) FROM items") == [(2,)]
            assert target.sql("postgres", "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles "
                                          "WHERE rolname = 'user_role'") == [("the user's",)]  # fmt: skip
            row = await w.job(job)
            assert row.status == backup_jobs.FAILED and row.end_time is not None
            error = msgspec.json.decode(row.error or b"{}")
            assert "its worker stopped while running it" in error["message"], error

            # given up again (a give-up that could not be recorded is retried): nothing more goes
            await w.give_up(job, target_id)
            assert databases(target) == before_dbs - {"crm", "shop"}
            assert marks(target) == ["billing", "other_role"]
        finally:
            await w.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("how", ["unmapped", "nothing-listens", "instance-gone"])
def test_a_target_that_cannot_be_reached_does_not_stop_the_give_up(
    tmp_path: Path, target: PostgresServer, how: str
) -> None:
    target_id = server_id("unreachable")

    async def scenario() -> None:
        w = await world(tmp_path)
        dead = socket.socket()  # bound, never listening: a port where nothing answers
        try:
            job = await w.restore_job()
            leftovers(target, job, str(uuid.uuid4()))
            before = marks(target)
            if how == "nothing-listens":
                dead.bind(("127.0.0.1", 0))
                port = dead.getsockname()[1]
                await w.map(target_id, f"postgresql://postgres:pw@127.0.0.1:{port}/postgres")
            elif how == "instance-gone":
                await w.map(target_id, target.url("postgres"))
                await w.store.transact(lambda tx: tx.delete_resource(INSTANCE.lower()))

            await w.give_up(job, target_id)  # no exception

            assert (await w.job(job)).status == backup_jobs.FAILED
            # what the job left could not be reached (or not be attributed): still there, for the
            # operator; nothing else was touched either
            assert marks(target) == before
        finally:
            dead.close()
            await w.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("how", ["give_up", "rerun"])
def test_a_job_whose_completion_was_committed_keeps_its_databases_when_claimed_again(
    tmp_path: Path, target: PostgresServer, how: str
) -> None:
    """An attempt committed Completed and its worker died before the marks were released; the job
    is claimed again, past its attempts (given up) or not (run again): the restored databases are
    the user's now, and are released (the marks go, as the worker would have done)."""
    target_id = server_id("completed")
    other = str(uuid.uuid4())

    async def scenario() -> None:
        w = await world(tmp_path)
        try:
            await w.map(target_id, target.url("postgres"))
            job = await w.restore_job()
            leftovers(target, job, other)
            await w.jobs._finish_job(job, backup_jobs.COMPLETED)
            before_dbs, before_roles = databases(target), roles(target)

            if how == "give_up":
                await w.give_up(job, target_id)
            else:
                await w.rerun(job, target_id)

            assert (await w.job(job)).status == backup_jobs.COMPLETED
            assert databases(target) == before_dbs and roles(target) == before_roles
            assert marks(target) == ["billing", "other_role"]  # only the other job's marks stay
            comment = target.sql("postgres", "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles "
                                 "WHERE rolname = 'app_reader'")  # fmt: skip
            assert comment == [("reads the sales schema",)], comment  # its own comment is back
        finally:
            await w.close()

    asyncio.run(scenario())

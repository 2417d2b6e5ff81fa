"""Vault format 2 on every vault store: the local directory, Azure Blob (Azurite) and S3 (moto's
server), each started by the tests. Through the real server and a real PostgreSQL database: an SDK
backup, a restore equal to the source, a second backup writing only what changed (bytes in the
store), nothing readable in any stored object, verify naming a point whose pack was damaged, garbage
collection after retention freeing what no point needs and keeping what one does, and on an S3
bucket with Object Lock, packs of an immutable vault that S3 itself refuses to delete."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import httpx
import pytest
from azure.mgmt.dataprotection import DataProtectionMgmtClient

from dpvault.arm import ids
from dpvault.datastores import ObjectLockedError
from dpvault.vault import format as vault_format
from tests.e2e.test_sdk import DpvaultCredential
from tests.integration.test_protection import Protected, _advance, make_sample_database
from tests.integration.test_restore import restore_request, table_state, target_info
from tests.integration.test_vault_format import _job_bytes, _verify
from tests.support import API, SUB, PostgresServer, Server, wait_operation
from tests.vaultfiles import (
    datastore_of,
    flip_a_byte_in_each_stored_pack,
    object_keys,
    pack_keys,
    raw_objects,
    stored_bytes,
    unreferenced_packs,
)

STORES = ["local", "azure", "s3"]
IMMUTABLE_API = "2026-06-01"  # immutabilitySettings is not in 2023-01-01


def _sdk(server: Server) -> DataProtectionMgmtClient:
    return DataProtectionMgmtClient(
        DpvaultCredential(server), SUB, base_url=server.base, connection_verify=server.ca, api_version=API
    )


@pytest.mark.parametrize("store", STORES)
def test_backups_into_every_store_restore_dedupe_are_sealed_and_verify(
    store: str,
    make_server: Callable[..., Server],
    vault_store_args: Callable[..., tuple],
    source_pg: PostgresServer,
) -> None:
    args, environ = vault_store_args(store)
    server = make_server(*args, environ=environ)
    marker = f"dpvault-marker-{uuid.uuid4().hex}"
    db = make_sample_database(source_pg, customers=2000, orders=5000)
    source_pg.sql(  # ~12 MB that neither compresses nor dedupes within itself: a dozen chunks
        db,
        "CREATE TABLE blobs AS SELECT g AS id, (SELECT decode(string_agg(md5(g::text || '.' || i::text), ''), 'hex') "
        "FROM generate_series(1, 64) i) AS b FROM generate_series(1, 12000) g;"
        "CREATE TABLE notes (id int PRIMARY KEY, body text); INSERT INTO notes VALUES (1, 'first');"
        f"CREATE TABLE secrets (v text); INSERT INTO secrets VALUES ('{marker}')",
    )
    with server.client() as client:
        p = Protected(server, client, source_pg, db).create()
        assert p.put()["status"] == "Succeeded"
        sdk = _sdk(server)
        backed_up = table_state(source_pg, db)
        result = sdk.backup_instances.begin_adhoc_backup(
            p.env.rg,
            p.env.vault,
            p.name,
            {"backupRuleOptions": {"ruleName": "BackupDaily"}},
            polling_interval=0,
        ).result()
        first = p.wait_job(result.job_id)
        assert first["status"] == "Completed", first
        (rp,) = list(sdk.recovery_points.list(p.env.rg, p.env.vault, p.name))
        stored1, reused1 = _job_bytes(first)
        in_store1 = stored_bytes(server)
        assert stored1 > 0 and reused1 == 0 and in_store1 >= stored1

        # a small change: the second backup writes only the chunks that changed, in the store too
        source_pg.sql(db, "UPDATE notes SET body = 'second' WHERE id = 1")
        second = p.wait_job(p.backup())
        assert second["status"] == "Completed", second
        _, reused2 = _job_bytes(second)
        assert reused2 > 0.75 * int(second["extendedInfo"]["dataTransferredInBytes"])
        grown = stored_bytes(server) - in_store1
        assert 0 < grown < 0.2 * in_store1, (grown, in_store1)

        # nothing readable in any object the store holds
        everything = raw_objects(server)
        assert everything and not any(marker.encode() in blob for blob in everything)
        assert not any(b"CREATE TABLE" in blob for blob in everything)

        # the first point restores into a new database equal to the source as it was backed up
        target = f"restored_{uuid.uuid4().hex[:8]}"
        restored = sdk.backup_instances.begin_trigger_restore(
            p.env.rg,
            p.env.vault,
            p.name,
            restore_request(rp.name, target_info(p, target)),
            polling_interval=0,
        ).result()
        assert p.wait_job(restored.job_id)["status"] == "Completed"
        assert table_state(source_pg, target) == backed_up

        # verify reads every pack: a flipped byte in each is found and named by recovery point
        assert _verify(server, p.name).returncode == 0
        assert flip_a_byte_in_each_stored_pack(server, p.env.vault_path) > 0
        out = _verify(server, p.name)
        assert out.returncode == 1, out.stdout + out.stderr
        assert {rp["name"] for rp in p.points()} <= {
            line.split()[1] for line in out.stdout.splitlines() if line.startswith("BAD ")
        }


@pytest.mark.parametrize("store", STORES)
def test_retention_frees_what_no_point_needs_and_keeps_what_one_does(
    store: str,
    make_server: Callable[..., Server],
    vault_store_args: Callable[..., tuple],
    source_pg: PostgresServer,
) -> None:
    args, environ = vault_store_args(store)
    server = make_server("--clock", "manual", *args, environ=environ)
    db = make_sample_database(source_pg, customers=2000, orders=2000)
    source_pg.sql(  # ~8 MB that only the first backup holds: its packs are that point's alone
        db,
        "CREATE TABLE blobs AS SELECT g AS id, (SELECT decode(string_agg(md5(g::text || '.' || i::text), ''), 'hex') "
        "FROM generate_series(1, 64) i) AS b FROM generate_series(1, 8000) g",
    )
    with server.client() as client:
        p = Protected(server, client, source_pg, db).create()
        assert p.put()["status"] == "Succeeded"
        assert p.wait_job(p.backup())["status"] == "Completed"
        first_packs = set(pack_keys(server, p.env.vault_path))
        source_pg.sql(db, "DROP TABLE blobs")
        assert p.wait_job(p.backup())["status"] == "Completed"
        adhoc = {rp["name"] for rp in p.points()}
        assert len(adhoc) == 2

        # four days on: the daily schedule backs up (the database without blobs), and the two
        # points (kept 3 days) expire
        _advance(client, 4 * 86400)
        left = {rp["name"] for rp in p.points()}
        assert left and not adhoc & left
        deadline = time.monotonic() + 60
        while unreferenced_packs(server, p.env.vault_path):
            assert time.monotonic() < deadline, unreferenced_packs(server, p.env.vault_path)
            time.sleep(0.2)
        assert first_packs - set(pack_keys(server, p.env.vault_path))  # the blobs' packs went
        names = {
            key.rsplit("/", 1)[-1]
            for key in object_keys(server, vault_format.vault_prefix(ids.key(p.env.vault_path)))
        }
        assert {f"{rp}.manifest" for rp in adhoc}.isdisjoint(names)
        out = _verify(server, p.name)  # every remaining point reads whole: what they use was kept
        assert out.returncode == 0, out.stdout + out.stderr

        # deleting the instance frees the rest of its vault's packs
        r = client.delete(f"{p.env.instance_path(p.name)}?api-version={API}")
        assert r.status_code == 202
        assert wait_operation(client, r.headers["Azure-AsyncOperation"])["status"] == "Succeeded"
        assert pack_keys(server, p.env.vault_path) == []


def test_an_immutable_vault_on_s3_object_lock_is_locked_by_s3_itself(
    make_server: Callable[..., Server], vault_store_args: Callable[..., tuple], source_pg: PostgresServer
) -> None:
    args, environ = vault_store_args("s3", object_lock=True)
    server = make_server(*args, environ=environ)
    db = make_sample_database(source_pg, customers=200, orders=200)
    with server.client() as client:
        p = Protected(server, client, source_pg, db).create()
        vault = {
            "location": "westus",
            "properties": {
                "storageSettings": [{"datastoreType": "VaultStore", "type": "LocallyRedundant"}],
                "securitySettings": {"immutabilitySettings": {"state": "Unlocked"}},
            },
        }
        r = client.put(f"{p.env.vault_path}?api-version={IMMUTABLE_API}", json=vault)
        assert r.status_code in (200, 201), r.text
        if "Azure-AsyncOperation" in r.headers:
            assert wait_operation(client, r.headers["Azure-AsyncOperation"])["status"] == "Succeeded"
        assert p.put()["status"] == "Succeeded"
        assert p.wait_job(p.backup())["status"] == "Completed"
        packs = pack_keys(server, p.env.vault_path)
        assert packs

        async def try_delete(key: str) -> type[BaseException] | None:
            try:
                await datastore_of(server).delete(key)
            except ObjectLockedError:
                return ObjectLockedError
            return None

        for key in packs:  # S3 refuses, not dpvault: the store is asked directly
            assert asyncio.run(try_delete(key)) is ObjectLockedError
        assert set(pack_keys(server, p.env.vault_path)) == set(packs)


def test_an_object_store_outage_during_a_backup_keeps_the_server_up_and_the_backup_completes_after(
    make_server: Callable[..., Server], source_pg: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from tests.objectstores import Azurite, unique

    with Azurite() as azurite:  # its own: this test takes it down
        container = azurite.make_container(unique("vault"))
        server = make_server("--vault-store", f"azure://{container}/dpvault", environ=azurite.environ())
        db = make_sample_database(source_pg, customers=200, orders=200)
        with server.client() as client:
            p = Protected(server, client, source_pg, db).create()
            assert p.put()["status"] == "Succeeded"
            azurite.outage()
            job_id = p.backup()
            deadline = time.monotonic() + 30
            while True:  # the store is down: not ready, the job waits, the API keeps answering
                ready = httpx.get(f"{server.base}/readyz", verify=server.ssl_context(), timeout=10)
                if ready.status_code == 503:
                    break
                assert time.monotonic() < deadline, ready.text
                time.sleep(0.5)
            assert ready.json()["checks"]["vaultStore"] != "ok"
            assert p.job(job_id)["status"] == "InProgress"
            assert client.get(f"{p.env.vault_path}?api-version={API}").status_code == 200
            assert p.points() == []
            azurite.recover()
            job = p.wait_job(job_id, timeout=180)
            assert job["status"] == "Completed", [e["message"] for e in job.get("errorDetails") or []]
            assert len(p.points()) == 1
            assert _verify(server, p.name).returncode == 0

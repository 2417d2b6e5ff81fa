"""The PostgreSQL flexible server engine (whole server) through the official SDK: a server with 3
databases, a role and a non-public schema, reached through its source mapping (no credentials on the
instance); backup; restore as files into an Azurite container; every file's SHA-256 and a pg_restore
of each into fresh databases equal the source."""

from __future__ import annotations

import hashlib
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.mgmt.dataprotection import DataProtectionMgmtClient

from tests.e2e.test_sdk import DpvaultCredential
from tests.integration.test_restore import _pg_restore
from tests.integration.test_sources import account_id, download, files_target, names_in, set_source
from tests.support import API, SUB, Env, PostgresServer, Server, wait_operation

FLEX_TYPE = "Microsoft.DBforPostgreSQL/flexibleServers"
DATABASES = ("crm", "inventory", "shop")
STATE = "SELECT count(*), coalesce(sum(hashtext(t::text)::bigint), 0) FROM {} t"


@pytest.fixture
def flex_pg() -> Iterator[PostgresServer]:
    """A server of its own (a whole-server backup takes every database on it); not under pytest's
    tmp dir, which is private to root while the server runs as ``postgres``."""
    root = Path(tempfile.mkdtemp(prefix="dpvault-flexpg-"))
    pg = PostgresServer(root)
    pg.start()
    try:
        pg.sql("postgres", "CREATE ROLE app_reader LOGIN")
        for db in DATABASES:
            pg.sql("postgres", f'CREATE DATABASE "{db}"')
            pg.sql(db, "CREATE TABLE items (id int PRIMARY KEY, name text)")
            pg.sql(db, f"INSERT INTO items SELECT g, '{db}-' || g FROM generate_series(1, 200) g")
        pg.sql("crm", "CREATE SCHEMA sales; CREATE TABLE sales.leads (id serial PRIMARY KEY, who text)")
        pg.sql("crm", "INSERT INTO sales.leads (who) SELECT 'lead ' || g FROM generate_series(1, 50) g")
        pg.sql("crm", "GRANT USAGE ON SCHEMA sales TO app_reader; GRANT SELECT ON sales.leads TO app_reader")
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


def tables(pg: PostgresServer, db: str) -> dict[str, tuple[Any, ...]]:
    names = pg.sql(
        db,
        "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
    )
    return {name: tuple(pg.sql(db, STATE.format(name))[0]) for (name,) in names}


def flex_instance(policy_id: str, server_id: str) -> dict[str, Any]:
    """A flexible server as az sends it: the server's id, no credentials, no policy parameters."""
    info = {"objectType": "Datasource", "resourceID": server_id, "resourceName": server_id.rsplit("/", 1)[-1],
            "resourceType": FLEX_TYPE, "resourceLocation": "westus", "datasourceType": FLEX_TYPE}  # fmt: skip
    return {
        "properties": {
            "objectType": "BackupInstance",
            "friendlyName": "pgflex",
            "dataSourceInfo": info,
            "dataSourceSetInfo": {**info, "objectType": "DatasourceSet"},
            "policyInfo": {"policyId": policy_id},
            "validationType": "DeepValidation",
        }
    }


def test_a_whole_flexible_server_backs_up_and_restores_as_files_into_a_blob_container(
    server: Server, client: httpx.Client, flex_pg: PostgresServer, azurite: Any, tmp_path: Path
) -> None:
    env = Env(client).create()
    sdk = DataProtectionMgmtClient(
        DpvaultCredential(server), SUB, base_url=server.base, connection_verify=server.ca, api_version=API
    )
    from tests.support import policy_body

    sdk.backup_policies.create_or_update(env.rg, env.vault, "flexpolicy", policy_body(FLEX_TYPE))
    policy_id = f"{env.vault_path}/backupPolicies/flexpolicy"
    server_id = f"/subscriptions/{SUB}/resourceGroups/rg-pg/providers/Microsoft.DBforPostgreSQL/flexibleServers/flex-{uuid.uuid4().hex[:6]}"

    # no mapping: deep validation fails naming the command
    r = client.put(
        f"{env.instance_path('pgflex')}?api-version={API}", json=flex_instance(policy_id, server_id)
    )
    assert r.status_code == 201, r.text
    op = wait_operation(client, r.headers["Azure-AsyncOperation"])
    assert op["status"] == "Failed" and op["error"]["code"] == "UserErrorDatasourceNotMapped", op
    assert "dpvault sources set" in op["error"]["message"]

    validate = {"backupInstance": flex_instance(policy_id, server_id)["properties"]}
    r = client.post(f"{env.vault_path}/validateForBackup?api-version={API}", json=validate)
    assert r.status_code == 202, r.text
    op = wait_operation(client, r.headers["Azure-AsyncOperation"])
    assert op["status"] == "Failed" and op["error"]["code"] == "UserErrorDatasourceNotMapped", op

    set_source(server, server_id, flex_pg.url("postgres"))
    r = client.post(f"{env.vault_path}/validateForBackup?api-version={API}", json=validate)
    assert wait_operation(client, r.headers["Azure-AsyncOperation"])["status"] == "Succeeded"
    instance = sdk.backup_instances.begin_create_or_update(
        env.rg, env.vault, "pgflex", flex_instance(policy_id, server_id), polling_interval=0
    ).result()
    assert instance.properties.current_protection_state == "ProtectionConfigured"
    expected = {db: tables(flex_pg, db) for db in DATABASES}

    result = sdk.backup_instances.begin_adhoc_backup(
        env.rg, env.vault, "pgflex", {"backupRuleOptions": {"ruleName": "BackupWeekly"}}, polling_interval=0
    ).result()
    job = _wait_job(client, env, result.job_id)
    assert job["status"] == "Completed", job
    (rp,) = list(sdk.recovery_points.list(env.rg, env.vault, "pgflex"))
    meta = dict(
        x.split(":", 1) for x in rp.properties.recovery_point_data_stores_details[0].meta_data.split(";")
    )
    assert meta["databases"].split(",") == ["crm", "inventory", "postgres", "shop"]

    # the source changes after the backup
    flex_pg.sql("shop", "DELETE FROM items WHERE id % 2 = 0")

    set_source(server, account_id(), azurite.connection_string)
    container = azurite.make_container(f"flex-{uuid.uuid4().hex[:8]}")
    target = files_target({"url": f"{azurite.endpoint}/{container}", "filePrefix": "nightly"})
    request = {"objectType": "AzureBackupRecoveryPointBasedRestoreRequest", "sourceDataStoreType": "VaultStore",
               "recoveryPointId": rp.name, "restoreTargetInfo": target}  # fmt: skip
    restored = sdk.backup_instances.begin_trigger_restore(
        env.rg, env.vault, "pgflex", request, polling_interval=0
    ).result()
    job = _wait_job(client, env, restored.job_id)
    assert job["status"] == "Completed", job
    files = [
        "nightly_globals.sql",
        *(f"nightly_{db}.dump" for db in ("crm", "inventory", "postgres", "shop")),
    ]
    assert names_in(azurite, container) == sorted([*files, *(f"{f}.sha256" for f in files)])
    for name in files:
        data = download(azurite, container, name) or b""
        sidecar = download(azurite, container, f"{name}.sha256") or b""
        assert sidecar.decode() == f"{hashlib.sha256(data).hexdigest()}  {name}\n"
        assert job["extendedInfo"]["additionalDetails"][f"SHA256:{name}"] == hashlib.sha256(data).hexdigest()

    # rebuild on a fresh server: the globals, then each database from its file
    fresh_root = Path(tempfile.mkdtemp(prefix="dpvault-freshpg-"))
    fresh = PostgresServer(fresh_root)
    fresh.start()
    try:
        globals_sql = (download(azurite, container, "nightly_globals.sql") or b"").decode()
        assert "CREATE ROLE app_reader" in globals_sql and "PASSWORD" not in globals_sql
        psql = str(Path(_pg_restore()).with_name("psql"))
        run = ["-h", str(fresh.root), "-p", str(fresh.port), "-U", "postgres"]
        subprocess.run([psql, *run, "-d", "postgres", "-v", "ON_ERROR_STOP=0", "-q"], input=globals_sql.encode(),
                       check=True, capture_output=True)  # fmt: skip
        for db in DATABASES:
            archive = tmp_path / f"{db}.dump"
            archive.write_bytes(download(azurite, container, f"nightly_{db}.dump") or b"")
            fresh.sql("postgres", f'CREATE DATABASE "{db}"')
            subprocess.run([_pg_restore(), *run, "-d", db, "--exit-on-error", str(archive)], check=True,
                           capture_output=True)  # fmt: skip
            assert tables(fresh, db) == expected[db], db
        assert tables(fresh, "crm")["sales.leads"][0] == 50
        grants = fresh.sql("crm", "SELECT has_table_privilege('app_reader', 'sales.leads', 'SELECT')")
        assert grants == [(True,)]
    finally:
        fresh.stop()
        shutil.rmtree(fresh_root, ignore_errors=True)

    # into a local directory under the restore root: the same files, sha256sum -c passes
    directory = server.data_dir / "restores" / f"flex-{uuid.uuid4().hex[:6]}"
    local = {"objectType": "RestoreFilesTargetInfo", "recoveryOption": "FailIfExists",
             "targetDetails": {"url": directory.as_uri(), "filePrefix": "nightly", "restoreTargetLocationType": "AzureFiles"}}  # fmt: skip
    restored = sdk.backup_instances.begin_trigger_restore(
        env.rg, env.vault, "pgflex", {**request, "restoreTargetInfo": local}, polling_interval=0
    ).result()
    job = _wait_job(client, env, restored.job_id)
    assert job["status"] == "Completed", job
    assert sorted(p.name for p in directory.iterdir()) == sorted([*files, *(f"{f}.sha256" for f in files)])
    for name in files:
        assert (directory / name).read_bytes() == download(azurite, container, name)
        check = subprocess.run(
            ["sha256sum", "-c", f"{name}.sha256"], cwd=directory, capture_output=True, text=True
        )
        assert check.returncode == 0, check.stdout + check.stderr
    # again: FailIfExists at validateRestore and in the job, the files untouched
    r = client.post(f"{env.instance_path('pgflex')}/validateRestore?api-version={API}",
                    json={"restoreRequestObject": {**request, "restoreTargetInfo": local}})  # fmt: skip
    op = wait_operation(client, r.headers["Azure-AsyncOperation"])
    assert op["status"] == "Failed" and op["error"]["code"] == "UserErrorTargetFileExists", op
    # every file but the last one moved away: the job writes four, meets the fifth, and takes its four back
    kept = (directory / "nightly_shop.dump").read_bytes()
    aside = directory / "aside"
    aside.mkdir()
    for name in files[:-1]:
        for n in (name, f"{name}.sha256"):
            (directory / n).rename(aside / n)
    restored = sdk.backup_instances.begin_trigger_restore(
        env.rg, env.vault, "pgflex", {**request, "restoreTargetInfo": local}, polling_interval=0
    ).result()
    job = _wait_job(client, env, restored.job_id)
    assert job["status"] == "Failed" and job["errorDetails"][0]["code"] == "UserErrorTargetFileExists", job
    left = sorted(p.name for p in directory.iterdir())
    assert left == ["aside", "nightly_shop.dump", "nightly_shop.dump.sha256"], left
    assert (directory / "nightly_shop.dump").read_bytes() == kept

    # into the source server itself: its databases have tables -> FailIfExists, nothing changed
    # (restores into servers: test_flexible_restore.py)
    into_server = {"objectType": "RestoreTargetInfo", "recoveryOption": "FailIfExists", "restoreLocation": "westus",
                   "datasourceInfo": {**flex_instance(policy_id, server_id)["properties"]["dataSourceInfo"]}}  # fmt: skip
    restored = sdk.backup_instances.begin_trigger_restore(
        env.rg, env.vault, "pgflex", {**request, "restoreTargetInfo": into_server}, polling_interval=0
    ).result()
    job = _wait_job(client, env, restored.job_id)
    assert job["status"] == "Failed", job
    assert job["errorDetails"][0]["code"] == "UserErrorTargetDatabaseNotEmpty", job
    assert tables(flex_pg, "crm") == expected["crm"]

    # a container that does not exist: a Failed job, nothing written
    missing = files_target(
        {"url": f"{azurite.endpoint}/missing-{uuid.uuid4().hex[:6]}", "filePrefix": "nightly"}
    )
    restored = sdk.backup_instances.begin_trigger_restore(
        env.rg, env.vault, "pgflex", {**request, "restoreTargetInfo": missing}, polling_interval=0
    ).result()
    job = _wait_job(client, env, restored.job_id)
    assert job["status"] == "Failed" and job["errorDetails"][0]["code"] == "UserErrorContainerNotFound", job
    # the same prefix again: FailIfExists, nothing overwritten
    before = download(azurite, container, "nightly_shop.dump")
    restored = sdk.backup_instances.begin_trigger_restore(
        env.rg, env.vault, "pgflex", request, polling_interval=0
    ).result()
    job = _wait_job(client, env, restored.job_id)
    assert job["status"] == "Failed" and job["errorDetails"][0]["code"] == "UserErrorTargetFileExists", job
    assert download(azurite, container, "nightly_shop.dump") == before


def _wait_job(client: httpx.Client, env: Env, job_id: str) -> dict[str, Any]:
    import time

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        r = client.get(f"{env.vault_path}/backupJobs/{job_id}?api-version={API}")
        if r.status_code == 200 and r.json()["properties"]["status"] not in ("InProgress", "Started"):
            return r.json()["properties"]
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not end")


def test_flexible_server_validation_reports_an_unreachable_server_and_an_unreadable_database(
    server: Server, client: httpx.Client, flex_pg: PostgresServer
) -> None:
    env = Env(client).create()
    r = client.put(f"{env.vault_path}/backupPolicies/flexpolicy?api-version={API}", json=_policy())
    assert r.status_code == 200, r.text
    policy_id = f"{env.vault_path}/backupPolicies/flexpolicy"

    def validate(server_id: str) -> dict[str, Any]:
        body = {"backupInstance": flex_instance(policy_id, server_id)["properties"]}
        r = client.post(f"{env.vault_path}/validateForBackup?api-version={API}", json=body)
        assert r.status_code == 202, r.text
        return wait_operation(client, r.headers["Azure-AsyncOperation"])

    base = f"/subscriptions/{SUB}/resourceGroups/rg-pg/providers/Microsoft.DBforPostgreSQL/flexibleServers"
    with socket.socket() as dead:  # bound, never listening: nothing answers
        dead.bind(("127.0.0.1", 0))
        unreachable = f"{base}/down-{uuid.uuid4().hex[:6]}"
        set_source(
            server, unreachable, f"postgresql://postgres:pw@127.0.0.1:{dead.getsockname()[1]}/postgres"
        )
        op = validate(unreachable)
    assert op["status"] == "Failed" and op["error"]["code"] == "UserErrorDatabaseServerUnreachable", op

    # a user that cannot read a table in one of the databases
    flex_pg.sql("postgres", "CREATE ROLE limited LOGIN PASSWORD 'limited-pw'")
    flex_pg.sql("inventory", "GRANT SELECT ON items TO limited")
    flex_pg.sql("shop", "GRANT SELECT ON items TO limited")
    flex_pg.sql("crm", "GRANT SELECT ON items TO limited")
    limited = f"{base}/limited-{uuid.uuid4().hex[:6]}"
    set_source(server, limited, f"postgresql://limited:limited-pw@127.0.0.1:{flex_pg.port}/postgres")
    op = validate(limited)
    assert op["status"] == "Failed" and op["error"]["code"] == "UserErrorMissingDBPermissions", op
    assert "sales.leads" in op["error"]["message"]


def _policy() -> dict[str, Any]:
    from tests.support import policy_body

    return policy_body(FLEX_TYPE)

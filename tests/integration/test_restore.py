"""Restore: round trips through the official SDK, restore as files, FailIfExists, corrupted points,
stop/suspend/resume with the manual clock, and restore drills."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.mgmt.dataprotection import DataProtectionMgmtClient

from tests.e2e.test_sdk import DpvaultCredential
from tests.integration.test_protection import Protected, _advance, make_sample_database
from tests.support import API, SUB, PostgresServer, Server, rg_path, wait_operation
from tests.vaultfiles import flip_a_byte_in_each_pack

CHECKSUM = "SELECT count(*), coalesce(sum(hashtext(t::text)::bigint), 0) FROM {} t"


def table_state(pg: PostgresServer, database: str) -> dict[str, tuple[int, int]]:
    return {t: tuple(pg.sql(database, CHECKSUM.format(t))[0]) for t in ("customers", "orders")}  # type: ignore[misc]


def database_exists(pg: PostgresServer, name: str) -> bool:
    return bool(pg.sql("postgres", f"SELECT 1 FROM pg_database WHERE datname = '{name}'"))


def target_info(p: Protected, database: str) -> dict[str, Any]:
    server_id = "/subscriptions/f75d8d8b-6735-4697-82e1-1a7a3ff0d5d4/resourceGroups/viveksipgtest/providers/Microsoft.DBforPostgreSQL/servers/viveksipgtest"
    return {
        "objectType": "RestoreTargetInfo",
        "recoveryOption": "FailIfExists",
        "restoreLocation": "westus",
        "datasourceInfo": {
            "objectType": "Datasource", "resourceID": f"{server_id}/databases/{database}", "resourceName": database,
            "resourceType": "Microsoft.DBforPostgreSQL/servers/databases", "datasourceType": "Microsoft.DBforPostgreSQL/servers/databases",
        },
        "datasourceAuthCredentials": {
            "objectType": "SecretStoreBasedAuthCredentials",
            "secretStoreResource": {"uri": p.uri, "secretStoreType": "AzureKeyVault"},
        },
    }  # fmt: skip


def restore_request(rp_id: str, target: dict[str, Any]) -> dict[str, Any]:
    return {
        "objectType": "AzureBackupRecoveryPointBasedRestoreRequest",
        "sourceDataStoreType": "VaultStore",
        "recoveryPointId": rp_id,
        "restoreTargetInfo": target,
    }


def restore(p: Protected, request: dict[str, Any], *, validate: bool = False) -> httpx.Response:
    action = "validateRestore" if validate else "restore"
    body = {"restoreRequestObject": request} if validate else request
    return p.client.post(f"{p.env.instance_path(p.name)}/{action}?api-version={API}", json=body)


def finish(p: Protected, r: httpx.Response) -> tuple[dict[str, Any], httpx.Response]:
    assert r.status_code == 202, r.text
    op = wait_operation(p.client, r.headers["Azure-AsyncOperation"])
    return op, p.client.get(r.headers["Location"])


@pytest.fixture
def protected(server: Server, client: httpx.Client, source_pg: PostgresServer) -> Protected:
    db = make_sample_database(source_pg, customers=300, orders=500)
    p = Protected(server, client, source_pg, db).create()
    assert p.put()["status"] == "Succeeded"
    return p


def test_round_trip_through_the_sdk_restores_the_backed_up_state(
    server: Server, protected: Protected, source_pg: PostgresServer
) -> None:
    p = protected
    sdk = DataProtectionMgmtClient(
        DpvaultCredential(server), SUB, base_url=server.base, connection_verify=server.ca, api_version=API
    )
    backed_up = table_state(source_pg, p.database)
    result = sdk.backup_instances.begin_adhoc_backup(
        p.env.rg, p.env.vault, p.name, {"backupRuleOptions": {"ruleName": "BackupDaily"}}, polling_interval=0
    ).result()
    assert sdk.jobs.get(p.env.rg, p.env.vault, result.job_id).properties.status in ("InProgress", "Completed")
    assert p.wait_job(result.job_id)["status"] == "Completed"
    (rp,) = list(sdk.recovery_points.list(p.env.rg, p.env.vault, p.name))

    # the source changes after the backup
    source_pg.sql(
        p.database, "DELETE FROM orders WHERE id % 3 = 0; UPDATE customers SET name = 'changed' WHERE id < 50"
    )
    assert table_state(source_pg, p.database) != backed_up

    target = f"restored_{uuid.uuid4().hex[:8]}"
    restored = sdk.backup_instances.begin_trigger_restore(
        p.env.rg, p.env.vault, p.name, restore_request(rp.name, target_info(p, target)), polling_interval=0
    ).result()
    job = p.wait_job(restored.job_id)
    assert job["status"] == "Completed", job
    assert job["operation"] == "Restore" and job["operationCategory"] == "Restore"
    assert job["restoreType"] == "AlternateLocation"
    assert job["extendedInfo"]["sourceRecoverPoint"]["recoveryPointID"] == rp.name
    assert job["extendedInfo"]["additionalDetails"]["CreatedDatabase"] == "true"
    assert table_state(source_pg, target) == backed_up
    view = source_pg.sql(target, "SELECT count(*) FROM big_orders")[0][0]
    assert view == source_pg.sql(target, "SELECT count(*) FROM orders WHERE amount > 500")[0][0]


def test_restore_by_time_maps_onto_the_discrete_point_or_is_a_400(
    protected: Protected, source_pg: PostgresServer
) -> None:
    p = protected
    assert p.wait_job(p.backup())["status"] == "Completed"
    (rp,) = p.points()
    target = f"bytime_{uuid.uuid4().hex[:8]}"
    request = {
        "objectType": "AzureBackupRecoveryTimeBasedRestoreRequest",
        "sourceDataStoreType": "VaultStore",
        "recoveryPointTime": rp["properties"]["recoveryPointTime"],
        "restoreTargetInfo": target_info(p, target),
    }
    op, final = finish(p, restore(p, request))
    assert op["status"] == "Succeeded"
    assert p.wait_job(final.json()["jobId"])["status"] == "Completed"
    assert database_exists(source_pg, target)
    request["recoveryPointTime"] = "2001-01-01T00:00:00Z"
    r = restore(p, request)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "UserErrorRecoveryPointNotFound"
    assert r.json()["error"]["target"] == "recoveryPointTime"


def test_restore_as_files_writes_the_dump_and_its_sha256(server: Server, protected: Protected) -> None:
    p = protected
    assert p.wait_job(p.backup())["status"] == "Completed"
    (rp,) = p.points()
    directory = server.data_dir / "restores" / "exports"
    target = {
        "objectType": "RestoreFilesTargetInfo",
        "recoveryOption": "FailIfExists",
        "targetDetails": {
            "url": directory.as_uri(),
            "filePrefix": "shop-backup",
            "restoreTargetLocationType": "AzureFiles",
        },
    }
    op, final = finish(p, restore(p, restore_request(rp["name"], target)))
    assert op["status"] == "Succeeded"
    job = p.wait_job(final.json()["jobId"])
    assert job["status"] == "Completed", job
    assert job["restoreType"] == "RestoreAsFiles"
    dump = directory / "shop-backup.dump"
    sha_line = (directory / "shop-backup.dump.sha256").read_text()
    expected = dict(
        x.split(":", 1) for x in rp["properties"]["recoveryPointDataStoresDetails"][0]["metaData"].split(";")
    )["sha256"]
    assert sha_line == f"{expected}  shop-backup.dump\n"
    check = subprocess.run(
        ["sha256sum", "-c", "shop-backup.dump.sha256"], cwd=directory, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    toc = subprocess.run(
        [_pg_restore(), "--list", str(dump)], capture_output=True, text=True, check=True
    ).stdout
    assert " TABLE public customers " in toc and " TABLE public orders " in toc
    # FailIfExists: the same prefix again fails, the file is untouched
    op, final = finish(p, restore(p, restore_request(rp["name"], target)))
    job = p.wait_job(final.json()["jobId"])
    assert job["status"] == "Failed" and job["errorDetails"][0]["code"] == "UserErrorTargetFileExists"
    # outside the allowed directories: refused up front
    target["targetDetails"]["url"] = "file:///etc"
    r = restore(p, restore_request(rp["name"], target))
    assert r.status_code == 400 and r.json()["error"]["code"] == "UserErrorRestoreTargetNotAllowed"
    # a blob container whose storage account nobody mapped (tests/integration/test_sources.py maps one)
    target["targetDetails"]["url"] = "https://teststorage.blob.core.windows.net/restoretest"
    r = restore(p, restore_request(rp["name"], target))
    assert r.status_code == 400 and r.json()["error"]["code"] == "UserErrorDatasourceNotMapped"


def _pg_restore() -> str:
    return str(next(Path("/usr/lib/postgresql").glob("*/bin/pg_restore"), "pg_restore"))


def test_fail_if_exists_refuses_a_non_empty_target_and_leaves_it_unchanged(
    protected: Protected, source_pg: PostgresServer
) -> None:
    p = protected
    assert p.wait_job(p.backup())["status"] == "Completed"
    (rp,) = p.points()
    target = f"occupied_{uuid.uuid4().hex[:8]}"
    source_pg.create_database(target)
    source_pg.sql(target, "CREATE TABLE keep_me (x int); INSERT INTO keep_me VALUES (1), (2)")
    op, final = finish(p, restore(p, restore_request(rp["name"], target_info(p, target)), validate=True))
    assert op["status"] == "Failed" and op["error"]["code"] == "UserErrorTargetDatabaseNotEmpty"
    op, final = finish(p, restore(p, restore_request(rp["name"], target_info(p, target))))
    job = p.wait_job(final.json()["jobId"])
    assert job["status"] == "Failed"
    assert job["errorDetails"][0]["code"] == "UserErrorTargetDatabaseNotEmpty"
    assert job["errorDetails"][0]["recommendedAction"]
    tables = source_pg.sql(
        target, "SELECT relname FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace"
    )
    assert tables == [("keep_me",)]
    assert source_pg.sql(target, "SELECT count(*) FROM keep_me")[0][0] == 2


def test_a_corrupted_point_fails_before_the_target_is_touched_and_verify_reports_it(
    server: Server, protected: Protected, source_pg: PostgresServer
) -> None:
    p = protected
    assert p.wait_job(p.backup())["status"] == "Completed"
    (rp,) = p.points()
    assert flip_a_byte_in_each_pack(server, p.env.vault_path) >= 1  # one bit of one byte, in each pack

    target = f"never_{uuid.uuid4().hex[:8]}"
    op, _final = finish(p, restore(p, restore_request(rp["name"], target_info(p, target)), validate=True))
    assert op["status"] == "Failed" and op["error"]["code"] == "UserErrorRecoveryPointCorrupted"
    op, final = finish(p, restore(p, restore_request(rp["name"], target_info(p, target))))
    job = p.wait_job(final.json()["jobId"])
    assert job["status"] == "Failed" and job["errorDetails"][0]["code"] == "UserErrorRecoveryPointCorrupted"
    assert not database_exists(source_pg, target)

    cmd = [
        sys.executable,
        "-m",
        "dpvault",
        "verify",
        "--data-dir",
        str(server.data_dir),
        "--instance",
        p.name,
    ]
    if server.database_url:
        cmd += ["--database-url", server.database_url]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 1
    assert "1 recovery points checked: 0 ok, 1 bad" in out.stdout
    assert rp["name"] in out.stdout + out.stderr


def test_restore_drills_pass_on_a_good_point_and_flag_a_corrupted_one(
    server: Server, client: httpx.Client, source_pg: PostgresServer
) -> None:
    db = make_sample_database(source_pg, customers=200, orders=300)
    p = Protected(server, client, source_pg, db).create()
    body_tags = {"dpvault-restore-drill": "after-backup"}
    from tests.support import instance_body

    body = instance_body(
        p.env.policy_id, database=db, secret_uri=p.uri, validation="DeepValidation", tags=body_tags
    )
    r = client.put(f"{p.env.instance_path(p.name)}?api-version={API}", json=body)
    assert wait_operation(client, r.headers["Azure-AsyncOperation"])["status"] == "Succeeded"
    assert p.wait_job(p.backup())["status"] == "Completed"
    drill = _wait_drill(p, 1)
    assert drill["status"] == "Completed", drill
    details = drill["extendedInfo"]["additionalDetails"]
    assert details["DrillResult"] == "Passed" and details["FingerprintCompared"] == "true"
    assert details["Tables"] == "2" and details["Rows"] == "500"
    (rp,) = p.points()
    assert "drill:Passed" in rp["properties"]["recoveryPointDataStoresDetails"][0]["metaData"]
    assert not [
        d
        for d in source_pg.sql("postgres", "SELECT datname FROM pg_database")
        if d[0].startswith("dpvault_drill_")
    ]

    assert flip_a_byte_in_each_pack(server, p.env.vault_path) >= 1
    r = client.post("/dpvault/restoreDrills", json={"recoveryPointId": rp["id"]})
    assert r.status_code == 202, r.text
    drill = _wait_drill(p, 2)
    assert drill["status"] == "Failed"
    assert drill["errorDetails"][0]["code"] == "UserErrorRecoveryPointCorrupted"
    props = p.instance()["properties"]
    assert props["protectionErrorDetails"]["code"] == "UserErrorRecoveryPointCorrupted"
    assert props["protectionStatus"]["errorDetails"]["target"] == rp["name"]


def _wait_drill(p: Protected, count: int, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        drills = [j["properties"] for j in p.jobs() if j["properties"]["operation"] == "RestoreDrill"]
        if len(drills) >= count and drills[count - 1]["status"] != "InProgress":
            return drills[count - 1]
        assert time.monotonic() < deadline, drills
        time.sleep(0.1)


def test_stop_suspend_and_resume_change_what_the_scheduler_does(
    make_server: Callable[..., Server], source_pg: PostgresServer
) -> None:
    server = make_server("--clock", "manual")
    db = make_sample_database(source_pg, customers=20, orders=20)
    with server.client() as client:
        p = Protected(server, client, source_pg, db).create()
        assert p.put()["status"] == "Succeeded"

        def act(action: str, expect: int = 202) -> httpx.Response:
            r = client.post(f"{p.env.instance_path(p.name)}/{action}?api-version={API}")
            assert r.status_code == expect, r.text
            if expect == 202:
                op, final = finish(p, r)
                assert op["status"] == "Succeeded" and final.status_code == 200
            return r

        def state() -> tuple[str, str]:
            props = p.instance()["properties"]
            return props["currentProtectionState"], props["protectionStatus"]["status"]

        assert _advance(client, 86400)["backups"] == 1
        act("resumeBackups", 409)
        act("suspendBackups")
        assert state() == ("BackupSchedulesSuspended", "ProtectionStopped")
        act("suspendBackups", 409)
        r = client.post(
            f"{p.env.instance_path(p.name)}/backup?api-version={API}",
            json={"backupRuleOptions": {"ruleName": "BackupDaily"}},
        )
        assert r.status_code == 409
        result = _advance(client, 4 * 86400)
        assert result["backups"] == 0
        assert (
            result["expired"] == 1
        )  # retention still runs while backups are suspended (Default keeps 3 days)
        act("resumeBackups")
        assert state() == ("ProtectionConfigured", "ProtectionConfigured")
        assert _advance(client, 86400)["backups"] == 1
        act("stopProtection")
        assert state() == ("ProtectionStopped", "ProtectionStopped")
        result = _advance(client, 10 * 86400)
        assert result == {**result, "backups": 0, "expired": 0}  # stopped: no backups, and the data is kept
        assert len(p.points()) == 1
        act("resumeProtection")
        assert _advance(client, 86400)["backups"] == 1
        r = client.post(f"{p.env.instance_path(p.name)}/sync?api-version={API}", json={"syncType": "Default"})
        op, final = finish(p, r)
        assert op["status"] == "Succeeded" and final.status_code == 200
        assert state() == ("ProtectionConfigured", "ProtectionConfigured")


def test_a_restore_and_a_delete_of_the_same_instance_exclude_each_other(
    make_server: Callable[..., Server], source_pg: PostgresServer
) -> None:
    """Deleting an instance deletes the points a running restore reads, so the two refuse each
    other with 409. The jobs are held still by a server with no background worker."""
    first = make_server()
    with first.client() as client:
        ps = [Protected(first, client, source_pg, make_sample_database(source_pg, customers=5, orders=5)).create()
              for _ in range(2)]  # fmt: skip
        for p in ps:
            assert p.put()["status"] == "Succeeded"
            assert p.wait_job(p.backup())["status"] == "Completed"
        points = [p.points()[0]["name"] for p in ps]
    first.stop()
    still = make_server("--no-background", data_dir=first.data_dir, database_url=first.database_url)
    with still.client() as client:
        restoring, deleting = ps
        for p in ps:
            p.client = p.env.client = client
        target = target_info(restoring, f"held_{uuid.uuid4().hex[:8]}")
        assert restore(restoring, restore_request(points[0], target)).status_code == 202
        r = client.delete(f"{restoring.env.instance_path(restoring.name)}?api-version={API}")
        assert r.status_code == 409 and r.json()["error"]["code"] == "AnotherOperationInProgress", r.text
        r = client.delete(f"{rg_path(restoring.env.rg)}?api-version=2022-12-01")
        assert r.status_code == 409 and r.json()["error"]["code"] == "ResourceGroupDeletionBlocked", r.text
        assert restoring.instance()["properties"]["provisioningState"] == "Succeeded"

        r = client.delete(f"{deleting.env.instance_path(deleting.name)}?api-version={API}")
        assert r.status_code == 202, r.text
        target = target_info(deleting, f"late_{uuid.uuid4().hex[:8]}")
        for validate in (False, True):
            r = restore(deleting, restore_request(points[1], target), validate=validate)
            assert r.status_code == 409 and r.json()["error"]["code"] == "AnotherOperationInProgress", r.text


def test_validate_restore_checks_the_rights_the_restore_needs(
    server: Server, protected: Protected, source_pg: PostgresServer
) -> None:
    """validateRestore fails exactly where the restore would: a new target needs CREATEDB, an
    existing empty one its ownership; granted, both validate and the restore then succeeds."""
    p = protected
    assert p.wait_job(p.backup())["status"] == "Completed"
    (rp,) = p.points()
    role = f"restorer_{uuid.uuid4().hex[:8]}"
    source_pg.sql("postgres", f"CREATE ROLE {role} LOGIN PASSWORD 'restorer-pw'")
    uri = f"https://kvrestore{uuid.uuid4().hex[:6]}.vault.azure.net/secrets/{role.replace('_', '-')}"
    server.set_secret(uri, source_pg.ado("postgres", user=role, password="restorer-pw"))

    def target(database: str) -> dict[str, Any]:
        info = target_info(p, database)
        info["datasourceAuthCredentials"]["secretStoreResource"]["uri"] = uri
        return info

    def validate(database: str) -> dict[str, Any]:
        op, _ = finish(p, restore(p, restore_request(rp["name"], target(database)), validate=True))
        return op

    new = f"new_{uuid.uuid4().hex[:8]}"
    op = validate(new)
    assert op["status"] == "Failed" and op["error"]["code"] == "UserErrorCannotCreateDatabase", op
    assert "CREATEDB" in op["error"]["message"] and not database_exists(source_pg, new)

    existing = f"existing_{uuid.uuid4().hex[:8]}"
    source_pg.create_database(existing)  # owned by postgres; the role may connect (PUBLIC) but not own
    op = validate(existing)
    assert op["status"] == "Failed" and op["error"]["code"] == "UserErrorMissingDBPermissions", op
    assert "does not own" in op["error"]["message"]

    source_pg.sql("postgres", f"ALTER DATABASE {existing} OWNER TO {role}")
    assert validate(existing)["status"] == "Succeeded"
    source_pg.sql("postgres", f"ALTER ROLE {role} CREATEDB")
    assert validate(new)["status"] == "Succeeded"
    op, result = finish(p, restore(p, restore_request(rp["name"], target(new))))
    assert op["status"] == "Succeeded", op
    assert p.wait_job(result.json()["jobId"])["status"] == "Completed"
    assert table_state(source_pg, new) == table_state(source_pg, p.database)

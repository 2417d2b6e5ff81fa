"""Soft delete over raw HTTP against a real server with the manual clock (issue 13 item 1).

Backup instances: a vault with ``softDeleteSettings`` On or AlwaysOn keeps a deleted instance and
its real recovery points (``deletedBackupInstances``; retention paused, no backups) until undelete
(back ProtectionStopped, points intact, backups resume with resumeProtection) or the purge after
the retention days (moved by ``/dpvault/clock/advance``; the points' files go too). AlwaysOn
cannot be turned off; a vault holding soft-deleted instances cannot be deleted. Vaults: deleted
into ``locations/{l}/deletedVaults`` and brought back by PUT with ``x-ms-deleted-vault-id``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.integration.test_protection import daily_policy, make_sample_database
from tests.support import SUB, PostgresServer, Server, instance_body, rg_path, wait_operation

NEW = "2026-06-01"
OLD = "2023-01-01"
DAY = 86400.0


@pytest.fixture(scope="module")
def server(make_server: Callable[..., Server]) -> Server:
    return make_server("--clock", "manual")


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def advance(client: httpx.Client, seconds: float) -> dict[str, Any]:
    r = client.post("/dpvault/clock/advance", json={"seconds": seconds}, timeout=120)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["complete"] is True, body
    return body


class Vault:
    """A vault (soft delete as given) with the daily policy, in a resource group of its own."""

    def __init__(self, client: httpx.Client, server: Server, pg: PostgresServer, api: str = NEW) -> None:
        self.c, self.server, self.pg, self.api = client, server, pg, api
        self.rg = f"rg-sd-{uuid.uuid4().hex[:6]}"
        self.name = f"vault-{uuid.uuid4().hex[:6]}"

    @property
    def path(self) -> str:
        return f"{rg_path(self.rg)}/providers/Microsoft.DataProtection/backupVaults/{self.name}"

    def q(self, path: str, api: str | None = None) -> str:
        return f"{path}?api-version={api or self.api}"

    def create(self, soft: dict[str, Any] | None) -> Vault:
        props: dict[str, Any] = {
            "storageSettings": [{"datastoreType": "VaultStore", "type": "LocallyRedundant"}]
        }
        if soft is not None:
            props["securitySettings"] = {"softDeleteSettings": soft}
        r = self.c.put(self.q(self.path), json={"location": "westus", "properties": props})
        assert r.status_code == 201, r.text
        assert wait_operation(self.c, r.headers["Azure-AsyncOperation"])["status"] == "Succeeded"
        r = self.c.put(self.q(f"{self.path}/backupPolicies/daily"), json=daily_policy())
        assert r.status_code == 200, r.text
        return self

    def protect(self, name: str) -> str:
        """An instance of a new sample database (deep validation), ProtectionConfigured."""
        database = make_sample_database(self.pg, f"sd_{uuid.uuid4().hex[:8]}", customers=20, orders=30)
        uri = f"https://kv{uuid.uuid4().hex[:6]}.vault.azure.net/secrets/{database.replace('_', '-')}"
        self.server.set_secret(uri, self.pg.ado(database))
        body = instance_body(
            f"{self.path}/backupPolicies/daily",
            database=database,
            secret_uri=uri,
            validation="DeepValidation",
        )
        r = self.c.put(self.q(f"{self.path}/backupInstances/{name}"), json=body)
        assert r.status_code == 201, r.text
        assert wait_operation(self.c, r.headers["Azure-AsyncOperation"], 60)["status"] == "Succeeded"
        assert self.state(name) == "ProtectionConfigured"
        return database

    def state(self, name: str) -> str:
        r = self.c.get(self.q(f"{self.path}/backupInstances/{name}"))
        assert r.status_code == 200, r.text
        return r.json()["properties"]["currentProtectionState"]

    def backup(self, name: str) -> str:
        r = self.c.post(
            self.q(f"{self.path}/backupInstances/{name}/backup"),
            json={
                "backupRuleOptions": {
                    "ruleName": "BackupDaily",
                    "triggerOption": {"retentionTagOverride": "Default"},
                }
            },
        )
        assert r.status_code == 202, r.text
        assert wait_operation(self.c, r.headers["Azure-AsyncOperation"])["status"] == "Succeeded"
        job = self.c.get(r.headers["Location"]).json()["jobId"]
        advance(self.c, 0)  # the backup job runs to the end
        details = self.c.get(self.q(f"{self.path}/backupJobs/{job}")).json()["properties"]
        assert details["status"] == "Completed", details
        return details["extendedInfo"]["additionalDetails"]["RecoveryPointId"]

    def points(self, name: str, deleted: bool = False) -> list[str]:
        collection = "deletedBackupInstances" if deleted else "backupInstances"
        r = self.c.get(self.q(f"{self.path}/{collection}/{name}/recoveryPoints"))
        assert r.status_code == 200, r.text
        return sorted(p["name"] for p in r.json()["value"])

    def delete(self, name: str) -> dict[str, Any]:
        r = self.c.delete(self.q(f"{self.path}/backupInstances/{name}"))
        assert r.status_code == 202, r.text
        return wait_operation(self.c, r.headers["Azure-AsyncOperation"])

    def deleted(self, api: str | None = None) -> list[dict[str, Any]]:
        r = self.c.get(self.q(f"{self.path}/deletedBackupInstances", api))
        assert r.status_code == 200, r.text
        return r.json()["value"]

    def undelete(self, name: str) -> httpx.Response:
        return self.c.post(self.q(f"{self.path}/deletedBackupInstances/{name}/undelete"))

    def drop(self) -> None:
        self.c.delete(f"{rg_path(self.rg)}?api-version=2021-04-01")


def dumps(server: Server) -> int:
    """Recovery points' own objects in the vault store (format 2 manifests; format 1 archives)."""
    root = server.data_dir / "vault"
    return sum(1 for _ in root.rglob("*.manifest")) + sum(1 for _ in root.rglob("*.dump"))


def test_delete_keeps_instance_and_points_undelete_resumes_backups(
    client: httpx.Client, server: Server, source_pg: PostgresServer
) -> None:
    v = Vault(client, server, source_pg).create({"state": "On", "retentionDurationInDays": 14})
    try:
        v.protect("bi1")
        point = v.backup("bi1")
        for api, state in ((OLD, None), ("2023-11-01", "Completed")):  # recoveryPointState came in 2023-11-01
            rp = client.get(v.q(f"{v.path}/backupInstances/bi1/recoveryPoints/{point}", api)).json()
            assert rp["properties"].get("recoveryPointState") == state, rp
        op = v.delete("bi1")
        assert op["status"] == "Succeeded", op
        assert client.get(v.q(f"{v.path}/backupInstances/bi1")).status_code == 404
        (record,) = v.deleted()
        props = record["properties"]
        assert record["type"] == "Microsoft.DataProtection/backupVaults/deletedBackupInstances"
        assert record["id"].endswith(f"/backupVaults/{v.name}/deletedBackupInstances/bi1")
        assert props["objectType"] == "DeletedBackupInstance"
        assert props["protectionStatus"]["status"] == props["currentProtectionState"] == "SoftDeleted"
        info = props["deletionInfo"]
        assert set(info) == {"deletionTime", "billingEndDate", "scheduledPurgeTime", "deleteActivityID"}
        assert info["scheduledPurgeTime"] > info["deletionTime"]
        assert v.deleted(OLD)[0]["name"] == "bi1"  # deletedBackupInstances is in 2023-01-01 too
        assert client.get(v.q(f"{v.path}/deletedBackupInstances/bi1")).json()["id"] == record["id"]
        assert v.points("bi1", deleted=True) == [point]  # kept
        jobs = len(client.get(v.q(f"{v.path}/backupJobs")).json()["value"])
        advance(client, 2 * DAY)  # two scheduled occurrences pass: no backup of a deleted instance
        assert len(client.get(v.q(f"{v.path}/backupJobs")).json()["value"]) == jobs
        assert v.points("bi1", deleted=True) == [point]

        r = v.undelete("bi1")
        assert r.status_code == 202 and r.content == b"", r.text
        assert wait_operation(client, r.headers["Azure-AsyncOperation"])["status"] == "Succeeded"
        assert client.get(r.headers["Location"]).json() == {"objectType": "OperationJobExtendedInfo"}
        assert v.deleted() == []
        assert v.state("bi1") == "ProtectionStopped"
        assert v.points("bi1") == [point]
        r = client.post(v.q(f"{v.path}/backupInstances/bi1/resumeProtection"))
        assert r.status_code == 202, r.text
        assert wait_operation(client, r.headers["Azure-AsyncOperation"])["status"] == "Succeeded"
        assert v.state("bi1") == "ProtectionConfigured"
        advance(client, DAY)  # the schedule runs again
        assert set(v.points("bi1")) - {point}, "no scheduled backup after resumeProtection"
    finally:
        v.drop()


def test_retention_is_paused_while_soft_deleted_and_purge_removes_everything(
    client: httpx.Client, server: Server, source_pg: PostgresServer
) -> None:
    """Default points live 3 days; soft-deleted 20 days they stay. After the 14 retention days the
    instance, its points and their files are gone (the advance reports the purge)."""
    v = Vault(client, server, source_pg).create({"state": "AlwaysOn"})
    try:
        v.protect("bi2")
        points = [v.backup("bi2"), v.backup("bi2")]
        before = dumps(server)
        assert v.delete("bi2")["status"] == "Succeeded"
        (record,) = v.deleted()
        advance(client, 10 * DAY)  # past the points' 3 days
        assert v.points("bi2", deleted=True) == sorted(points)
        assert dumps(server) == before
        purged = advance(client, 5 * DAY)  # past the vault's 14 days (the default)
        assert purged["purged"] >= 1, purged
        assert v.deleted() == []
        r = client.get(v.q(f"{v.path}/deletedBackupInstances/bi2"))
        assert r.status_code == 404 and r.json()["error"]["code"] == "UserErrorGenericResourceNotFound", (
            r.text
        )
        assert dumps(server) == before - 2
        r = v.undelete("bi2")
        assert r.status_code == 404 and r.json()["error"]["code"] == "UserErrorGenericResourceNotFound", (
            r.text
        )
        assert record["properties"]["deletionInfo"]["scheduledPurgeTime"]
    finally:
        v.drop()


def test_always_on_cannot_be_turned_off_and_retention_is_14_to_180_days(
    client: httpx.Client, server: Server, source_pg: PostgresServer
) -> None:
    v = Vault(client, server, source_pg).create({"state": "AlwaysOn", "retentionDurationInDays": 30})
    try:
        target = "properties.securitySettings.softDeleteSettings"
        for state in ("Off", "On"):
            body = {
                "location": "westus",
                "properties": {"securitySettings": {"softDeleteSettings": {"state": state}}},
            }
            for r in (client.put(v.q(v.path), json=body), client.patch(v.q(v.path), json=body)):
                assert r.status_code == 400, r.text
                error = r.json()["error"]
                assert error["code"] == "UserErrorSoftDeleteAlwaysOnCannotBeDisabled", r.text
                assert error["target"] == f"{target}.state", r.text
        for days in (13, 181, 0):
            body = {
                "properties": {
                    "securitySettings": {
                        "softDeleteSettings": {"state": "AlwaysOn", "retentionDurationInDays": days}
                    }
                }
            }
            r = client.patch(v.q(v.path), json=body)
            assert r.status_code == 400, r.text
            assert r.json()["error"]["code"] == "UserErrorInvalidSoftDeleteRetentionPeriod", r.text
            assert r.json()["error"]["target"] == f"{target}.retentionDurationInDays", r.text
        # a PUT that leaves securitySettings out keeps AlwaysOn (and its days)
        r = client.put(v.q(v.path), json={"location": "westus", "properties": {}})
        assert r.status_code == 200, r.text
        wait_operation(client, r.headers["Azure-AsyncOperation"])
        soft = client.get(v.q(v.path)).json()["properties"]["securitySettings"]["softDeleteSettings"]
        assert soft == {"state": "AlwaysOn", "retentionDurationInDays": 30.0}
        # "Enabled" (the newer examples' word) is On; the real service's "OFF" is Off
        other = Vault(client, server, source_pg).create({"state": "Enabled"})
        soft = client.get(other.q(other.path)).json()["properties"]["securitySettings"]["softDeleteSettings"]
        assert soft == {"state": "On", "retentionDurationInDays": 14.0}
        r = client.patch(
            other.q(other.path),
            json={"properties": {"securitySettings": {"softDeleteSettings": {"state": "OFF"}}}},
        )
        assert (
            r.status_code == 200
            and r.json()["properties"]["securitySettings"]["softDeleteSettings"]["state"] == "Off"
        )
        other.drop()
    finally:
        v.drop()


def test_vault_with_soft_deleted_instances_cannot_be_deleted(
    client: httpx.Client, server: Server, source_pg: PostgresServer
) -> None:
    v = Vault(client, server, source_pg).create({"state": "On", "retentionDurationInDays": 14})
    try:
        v.protect("bi3")
        assert v.delete("bi3")["status"] == "Succeeded"
        r = client.delete(v.q(v.path))
        assert r.status_code == 409, r.text
        assert (
            r.json()["error"]["code"] == "BackupVaultNotEmpty"
            and "soft-deleted" in r.json()["error"]["message"]
        )
        r = client.delete(v.q(f"{v.path}/backupPolicies/daily"))  # the deleted instance comes back to it
        assert r.status_code == 409 and r.json()["error"]["code"] == "PolicyInUse", r.text
        # the name is free: a new instance bi3 starts empty, and cannot be soft-deleted beside the old one
        v.protect("bi3")
        assert v.points("bi3") == []
        r = client.delete(v.q(f"{v.path}/backupInstances/bi3"))
        assert (
            r.status_code == 409 and r.json()["error"]["code"] == "UserErrorSoftDeletedBackupInstanceExists"
        ), r.text
        r = v.undelete("bi3")  # nor undeleted over the live one
        assert r.status_code == 409 and r.json()["error"]["code"] == "UserErrorBackupInstanceExists", r.text
    finally:
        v.drop()


def test_soft_delete_off_deletes_for_good(
    client: httpx.Client, server: Server, source_pg: PostgresServer
) -> None:
    v = Vault(client, server, source_pg, api=OLD).create(None)  # no securitySettings: Off, as before
    try:
        v.protect("bi4")
        v.backup("bi4")
        before = dumps(server)
        assert v.delete("bi4")["status"] == "Succeeded"
        assert v.deleted() == [] and dumps(server) == before - 1
        r = client.delete(v.q(v.path))
        assert r.status_code == 200, r.text
        r = client.get(
            f"/subscriptions/{SUB}/providers/Microsoft.DataProtection/locations/westus/deletedVaults?api-version={NEW}"
        )
        assert all(d["properties"]["originalBackupVaultName"] != v.name for d in r.json()["value"])
    finally:
        v.drop()


def test_resume_protection_from_suspended(
    client: httpx.Client, server: Server, source_pg: PostgresServer
) -> None:
    """Azure accepts resumeProtection after suspendBackups (az dataprotection resume-protection)."""
    v = Vault(client, server, source_pg).create(None)
    try:
        v.protect("bi5")
        for action, state in (
            ("suspendBackups", "BackupSchedulesSuspended"),
            ("resumeProtection", "ProtectionConfigured"),
        ):
            r = client.post(v.q(f"{v.path}/backupInstances/bi5/{action}"))
            assert r.status_code == 202, r.text
            assert wait_operation(client, r.headers["Azure-AsyncOperation"])["status"] == "Succeeded"
            assert v.state("bi5") == state
        r = client.post(v.q(f"{v.path}/backupInstances/bi5/resumeBackups"))
        assert r.status_code == 409 and r.json()["error"]["code"] == "UserErrorInvalidProtectionState", r.text
    finally:
        v.drop()


def deleted_vaults(client: httpx.Client, location: str = "westus") -> list[dict[str, Any]]:
    r = client.get(
        f"/subscriptions/{SUB}/providers/Microsoft.DataProtection/locations/{location}/deletedVaults?api-version={NEW}"
    )
    assert r.status_code == 200, r.text
    return r.json()["value"]


def test_vault_soft_delete_and_undelete(
    client: httpx.Client, server: Server, source_pg: PostgresServer
) -> None:
    """2026-06-01: the deleted vault is listed with its original name and dates; PUT with its id (or
    its GUID name, as PowerShell sends it) brings it back with its policies and settings; another
    deleted vault is purged after its days."""
    v = Vault(client, server, source_pg).create({"state": "On", "retentionDurationInDays": 14})
    w = Vault(client, server, source_pg).create({"state": "On", "retentionDurationInDays": 14})
    try:
        for vault in (v, w):
            r = client.delete(vault.q(vault.path))
            assert r.status_code == 200, r.text
            assert client.get(vault.q(vault.path)).status_code == 404
        mine = {d["properties"]["originalBackupVaultName"]: d for d in deleted_vaults(client)}
        record = mine[v.name]
        assert uuid.UUID(record["name"]) and record["type"] == "Microsoft.DataProtection/deletedBackupVaults"
        assert (
            record["id"]
            == f"/subscriptions/{SUB}/providers/Microsoft.DataProtection/locations/westus/deletedVaults/{record['name']}"
        )
        props = record["properties"]
        assert props["originalBackupVaultId"] == v.path and props["originalBackupVaultResourcePath"] == v.path
        assert set(props["resourceDeletionInfo"]) == {
            "deletionTime",
            "scheduledPurgeTime",
            "deleteActivityId",
        }
        r = client.get(f"{record['id']}?api-version={NEW}")
        assert r.status_code == 200 and r.json()["name"] == record["name"], r.text
        # versions before 2025-09-01 have no deleted vaults
        r = client.get(f"{record['id']}?api-version=2023-01-01")
        assert r.status_code == 400 and r.json()["error"]["code"] == "NoRegisteredProviderFound", r.text
        # undelete by id, sending only the location (the rest comes back)
        r = client.put(
            v.q(v.path), headers={"x-ms-deleted-vault-id": record["id"]}, json={"location": "westus"}
        )
        assert r.status_code == 201, r.text
        assert wait_operation(client, r.headers["Azure-AsyncOperation"])["status"] == "Succeeded"
        body = client.get(v.q(v.path)).json()
        assert body["properties"]["securitySettings"]["softDeleteSettings"] == {
            "state": "On",
            "retentionDurationInDays": 14.0,
        }
        assert [p["name"] for p in client.get(v.q(f"{v.path}/backupPolicies")).json()["value"]] == ["daily"]
        assert v.name not in {d["properties"]["originalBackupVaultName"] for d in deleted_vaults(client)}
        # a second undelete: the record is gone (404); over a live vault: 409
        r = client.put(
            v.q(v.path), headers={"x-ms-deleted-vault-id": mine[w.name]["name"]}, json={"location": "westus"}
        )
        assert r.status_code == 409 and r.json()["error"]["code"] == "UserErrorBackupVaultExists", r.text
        r = client.put(
            w.q(w.path), headers={"x-ms-deleted-vault-id": record["name"]}, json={"location": "westus"}
        )
        assert r.status_code == 404 and r.json()["error"]["code"] == "UserErrorGenericResourceNotFound", (
            r.text
        )
        r = client.put(
            w.q(w.path),
            headers={"x-ms-deleted-vault-id": "/subscriptions/x/nonsense"},
            json={"location": "westus"},
        )
        assert r.status_code == 400 and r.json()["error"]["target"] == "x-ms-deleted-vault-id", r.text
        # w's record under another name is refused
        r = client.put(
            v.q(f"{v.path}x"),
            headers={"x-ms-deleted-vault-id": mine[w.name]["name"]},
            json={"location": "westus"},
        )
        assert r.status_code == 400 and r.json()["error"]["target"] == "x-ms-deleted-vault-id", r.text
        # purge: w's record goes after its 14 days
        advance(client, 15 * DAY)
        assert w.name not in {d["properties"]["originalBackupVaultName"] for d in deleted_vaults(client)}
        r = client.put(
            w.q(w.path), headers={"x-ms-deleted-vault-id": mine[w.name]["name"]}, json={"location": "westus"}
        )
        assert r.status_code == 404, r.text
    finally:
        v.drop()
        w.drop()

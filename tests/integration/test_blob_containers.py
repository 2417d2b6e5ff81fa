"""The blob container engine through the official SDK, against Azurite as the storage accounts:
vaulted backup of two containers (nested prefixes, metadata, index tags, content settings), changes
at the source, then restores of one prefix, of a whole container under a new name, into a second
storage account; unchanged blobs are neither read nor stored again; failures end as Failed jobs
with UserFacingErrors and leave nothing half-written."""

from __future__ import annotations

import base64
import hashlib
import os
import time
import uuid
from typing import Any

import httpx
import pytest
from azure.mgmt.dataprotection import DataProtectionMgmtClient

from tests.e2e.test_sdk import DpvaultCredential
from tests.integration.test_sources import account_id, blob_service, set_source
from tests.objectstores import Azurite
from tests.support import API, SUB, Env, Server, policy_body, wait_operation

BLOB_TYPE = "Microsoft.Storage/storageAccounts/blobServices"


def state_of(azurite: Any, container: str) -> dict[str, tuple[Any, ...]]:
    """name -> (SHA-256, content type, cache control, Content-MD5, metadata without dpvault's marks,
    tags) of every blob of a container: what a restore must bring back."""
    client = blob_service(azurite).get_container_client(container)
    out: dict[str, tuple[Any, ...]] = {}
    for props in client.list_blobs(include=["metadata", "tags"]):
        data = client.download_blob(props.name).readall()
        md5 = props.content_settings.content_md5
        out[props.name] = (
            hashlib.sha256(data).hexdigest(), props.content_settings.content_type,
            props.content_settings.cache_control, base64.b64encode(bytes(md5)).decode() if md5 else None,
            dict(props.metadata), dict(props.tags or {}),
        )  # fmt: skip
    return out


def blob_instance(policy_id: str, account: str, containers: list[str]) -> dict[str, Any]:
    """A storage account as az sends it for vaulted blob backup: the account's id, the containers."""
    info = {"objectType": "Datasource", "resourceID": account, "resourceName": account.rsplit("/", 1)[-1],
            "resourceType": "Microsoft.Storage/storageAccounts", "resourceLocation": "westus",
            "datasourceType": BLOB_TYPE, "resourceUri": account}  # fmt: skip
    return {
        "properties": {
            "objectType": "BackupInstance",
            "friendlyName": info["resourceName"],
            "dataSourceInfo": info,
            "dataSourceSetInfo": {**info, "objectType": "DatasourceSet"},
            "policyInfo": {
                "policyId": policy_id,
                "policyParameters": {
                    "backupDatasourceParametersList": [
                        {"objectType": "BlobBackupDatasourceParameters", "containersList": containers}
                    ]
                },
            },
            "validationType": "DeepValidation",
        }
    }


def wait_job(client: httpx.Client, env: Env, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        r = client.get(f"{env.vault_path}/backupJobs/{job_id}?api-version={API}")
        if r.status_code == 200 and r.json()["properties"]["status"] not in ("InProgress", "Started"):
            return r.json()["properties"]
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not end")


def restore_request(rp: str, target: dict[str, Any]) -> dict[str, Any]:
    return {"objectType": "AzureBackupRecoveryPointBasedRestoreRequest", "sourceDataStoreType": "VaultStore",
            "recoveryPointId": rp, "restoreTargetInfo": target}  # fmt: skip


def target_info(account: str, objectType: str = "ItemLevelRestoreTargetInfo", **extra: Any) -> dict[str, Any]:  # noqa: N803
    return {
        "objectType": objectType,
        "recoveryOption": "FailIfExists",
        "restoreLocation": "westus",
        "datasourceInfo": blob_instance("-", account, [])["properties"]["dataSourceInfo"],
        **extra,
    }


def metadata_of(rp: Any) -> dict[str, str]:
    meta = rp.properties.recovery_point_data_stores_details[0].meta_data
    return dict(x.split(":", 1) for x in meta.split(";"))


def backed_up(
    server: Server, client: httpx.Client, sdk: Any, env: Env, azurite: Any, containers: list[str], name: str
) -> tuple[str, Any]:
    """The containers protected (a weekly blob policy, the account mapped) and backed up once: the
    account's id and the recovery point."""
    sdk.backup_policies.create_or_update(env.rg, env.vault, "blobpolicy", policy_body(BLOB_TYPE))
    account = account_id()
    set_source(server, account, azurite.connection_string)
    body = blob_instance(f"{env.vault_path}/backupPolicies/blobpolicy", account, containers)
    sdk.backup_instances.begin_create_or_update(env.rg, env.vault, name, body, polling_interval=0).result()
    done = sdk.backup_instances.begin_adhoc_backup(
        env.rg, env.vault, name, {"backupRuleOptions": {"ruleName": "BackupWeekly"}}, polling_interval=0
    ).result()
    assert wait_job(client, env, done.job_id)["status"] == "Completed"
    (rp,) = list(sdk.recovery_points.list(env.rg, env.vault, name))
    return account, rp


class Blobs:
    """Two containers of a fresh Azurite account: nested prefixes, metadata, tags, settings."""

    def __init__(self, azurite: Any) -> None:
        from azure.storage.blob import ContentSettings

        self.azurite = azurite
        suffix = uuid.uuid4().hex[:6]
        self.docs, self.media = f"docs-{suffix}", f"media-{suffix}"
        service = blob_service(azurite)
        service.create_container(self.docs, metadata={"owner": "team-a"})
        service.create_container(self.media)
        docs = service.get_container_client(self.docs)
        for i in range(30):
            name = f"reports/2026/{i:02d}.txt" if i < 20 else f"drafts/{i:02d}.md"
            data = f"document {i}\n".encode() * (i + 1)
            docs.upload_blob(
                name, data, metadata={"index": str(i)}, tags={"kind": "doc", "n": str(i)},
                content_settings=ContentSettings(content_type="text/plain", cache_control="max-age=60",
                                                 content_md5=bytearray(hashlib.md5(data).digest())),
            )  # fmt: skip
        media = service.get_container_client(self.media)
        media.upload_blob("video/big.bin", os.urandom(12 << 20), metadata={"codec": "raw"})  # 12 MiB
        media.upload_blob("empty.bin", b"")


@pytest.fixture
def sdk(server: Server) -> DataProtectionMgmtClient:
    return DataProtectionMgmtClient(
        DpvaultCredential(server), SUB, base_url=server.base, connection_verify=server.ca, api_version=API
    )


def test_blob_containers_back_up_and_restore_by_prefix_under_a_new_name_and_into_another_account(
    server: Server, client: httpx.Client, azurite: Any, sdk: DataProtectionMgmtClient
) -> None:
    env = Env(client).create()
    blobs = Blobs(azurite)
    sdk.backup_policies.create_or_update(env.rg, env.vault, "blobpolicy", policy_body(BLOB_TYPE))
    policy_id = f"{env.vault_path}/backupPolicies/blobpolicy"
    account = account_id()
    set_source(server, account, azurite.connection_string)

    # a container that does not exist fails deep validation, naming it
    r = client.put(f"{env.instance_path('blobs')}?api-version={API}",
                   json=blob_instance(policy_id, account, [blobs.docs, "no-such-container"]))  # fmt: skip
    op = wait_operation(client, r.headers["Azure-AsyncOperation"])
    assert op["status"] == "Failed" and op["error"]["code"] == "UserErrorContainerNotFound", op
    assert "no-such-container" in op["error"]["message"]

    instance = sdk.backup_instances.begin_create_or_update(
        env.rg,
        env.vault,
        "blobs",
        blob_instance(policy_id, account, [blobs.docs, blobs.media]),
        polling_interval=0,
    ).result()
    assert instance.properties.current_protection_state == "ProtectionConfigured"
    before = {c: state_of(azurite, c) for c in (blobs.docs, blobs.media)}

    first = sdk.backup_instances.begin_adhoc_backup(
        env.rg, env.vault, "blobs", {"backupRuleOptions": {"ruleName": "BackupWeekly"}}, polling_interval=0
    ).result()
    job = wait_job(client, env, first.job_id)
    assert job["status"] == "Completed", str(job.get("errorDetails"))
    first_stored = int(job["extendedInfo"]["additionalDetails"]["StoredBytes"])
    (rp1,) = list(sdk.recovery_points.list(env.rg, env.vault, "blobs"))
    meta = metadata_of(rp1)
    assert meta["containers"].split(",") == sorted([blobs.docs, blobs.media]) and meta["blobs"] == "32", meta

    # the second backup reads only what changed: one blob changed, one added, the rest reused unread
    service = blob_service(azurite)
    docs = service.get_container_client(blobs.docs)
    docs.upload_blob("drafts/20.md", b"rewritten draft\n", overwrite=True, metadata={"index": "20b"})
    docs.upload_blob("drafts/new.md", b"a new draft\n")
    second = sdk.backup_instances.begin_adhoc_backup(
        env.rg, env.vault, "blobs", {"backupRuleOptions": {"ruleName": "BackupWeekly"}}, polling_interval=0
    ).result()
    job = wait_job(client, env, second.job_id)
    assert job["status"] == "Completed", str(job.get("errorDetails"))
    details = job["extendedInfo"]["additionalDetails"]
    second_stored = int(details["StoredBytes"])
    assert first_stored > 12 << 20, str(job["extendedInfo"]["additionalDetails"])
    assert second_stored < first_stored / 100, (second_stored, first_stored)
    assert int(details["DeduplicatedBytes"]) >= 12 << 20  # the big blob: reused, not read again
    points = list(sdk.recovery_points.list(env.rg, env.vault, "blobs"))
    rp2 = next(p for p in points if p.name != rp1.name)
    assert metadata_of(rp2)["blobs"] == "33"
    after_change = state_of(azurite, blobs.docs)

    # the source loses and changes blobs after the backups
    for name in ("reports/2026/03.txt", "reports/2026/04.txt"):
        docs.delete_blob(name)
    docs.upload_blob("reports/2026/05.txt", b"tampered", overwrite=True)

    # 1. one prefix of the first point, into the original container: the deleted blobs come back;
    #    05.txt exists (tampered) so FailIfExists refuses the whole request, writing nothing
    by_prefix = target_info(account, restoreCriteria=[{
        "objectType": "ItemPathBasedRestoreCriteria", "itemPath": blobs.docs, "isPathRelativeToBackupItem": True,
        "subItemPathPrefix": ["reports/2026/0"]}])  # fmt: skip
    restored = sdk.backup_instances.begin_trigger_restore(
        env.rg, env.vault, "blobs", restore_request(rp1.name, by_prefix), polling_interval=0
    ).result()
    job = wait_job(client, env, restored.job_id)
    assert job["status"] == "Failed" and job["errorDetails"][0]["code"] == "UserErrorBlobAlreadyExists", job
    assert "reports/2026/05.txt" in job["errorDetails"][0]["message"]
    assert docs.get_blob_client("reports/2026/03.txt").exists() is False
    docs.delete_blob("reports/2026/05.txt")
    restored = sdk.backup_instances.begin_trigger_restore(
        env.rg, env.vault, "blobs", restore_request(rp1.name, by_prefix), polling_interval=0
    ).result()
    job = wait_job(client, env, restored.job_id)
    assert job["status"] == "Completed", str(job.get("errorDetails"))
    restored_details = job["extendedInfo"]["additionalDetails"]
    assert (restored_details["RestoredBlobs"], restored_details["AlreadyPresentBlobs"]) == ("3", "7")
    now = state_of(azurite, blobs.docs)
    for name in ("reports/2026/03.txt", "reports/2026/04.txt", "reports/2026/05.txt"):
        assert now[name] == before[blobs.docs][name], name
    assert now["drafts/20.md"] == after_change["drafts/20.md"]  # outside the prefix: untouched

    # 2. the whole container of the second point under a new name: equal to the state it was taken in
    renamed = f"docs-copy-{uuid.uuid4().hex[:6]}"
    whole = target_info(account, restoreCriteria=[{
        "objectType": "ItemPathBasedRestoreCriteria", "itemPath": blobs.docs, "isPathRelativeToBackupItem": True,
        "renameTo": renamed}])  # fmt: skip
    restored = sdk.backup_instances.begin_trigger_restore(
        env.rg, env.vault, "blobs", restore_request(rp2.name, whole), polling_interval=0
    ).result()
    job = wait_job(client, env, restored.job_id)
    assert job["status"] == "Completed", str(job.get("errorDetails"))
    assert state_of(azurite, renamed) == after_change
    assert service.get_container_client(renamed).get_container_properties().metadata == {"owner": "team-a"}

    # 3. every container of the first point into another storage account (a second Azurite)
    with Azurite() as other:
        other_id = account_id(f"other{uuid.uuid4().hex[:8]}")
        set_source(server, other_id, other.connection_string)
        everything = target_info(other_id, "RestoreTargetInfo")
        restored = sdk.backup_instances.begin_trigger_restore(
            env.rg, env.vault, "blobs", restore_request(rp1.name, everything), polling_interval=0
        ).result()
        job = wait_job(client, env, restored.job_id)
        assert job["status"] == "Completed", str(job.get("errorDetails"))
        for container in (blobs.docs, blobs.media):
            assert state_of(other, container) == before[container], container
        # 4. a range of names: media/video only, already there now -> refused whole, then into a new account state
        ranged = target_info(other_id, restoreCriteria=[{
            "objectType": "RangeBasedItemLevelRestoreCriteria", "minMatchingValue": f"{blobs.media}/video",
            "maxMatchingValue": f"{blobs.media}/video"}])  # fmt: skip
        blob_service(other).get_container_client(blobs.media).delete_blob("video/big.bin")
        restored = sdk.backup_instances.begin_trigger_restore(
            env.rg, env.vault, "blobs", restore_request(rp1.name, ranged), polling_interval=0
        ).result()
        job = wait_job(client, env, restored.job_id)
        assert job["status"] == "Completed", str(job.get("errorDetails"))
        assert job["extendedInfo"]["additionalDetails"]["RestoredBlobs"] == "1"
        assert state_of(other, blobs.media) == before[blobs.media]


def test_blob_restore_requests_that_cannot_work_are_refused_with_cloud_errors(
    server: Server, client: httpx.Client, azurite: Any, sdk: DataProtectionMgmtClient
) -> None:
    env = Env(client).create()
    blobs = Blobs(azurite)
    sdk.backup_policies.create_or_update(env.rg, env.vault, "blobpolicy", policy_body(BLOB_TYPE))
    policy_id = f"{env.vault_path}/backupPolicies/blobpolicy"
    account = account_id()
    set_source(server, account, azurite.connection_string)
    r = client.put(
        f"{env.instance_path('blobs')}?api-version={API}", json=blob_instance(policy_id, account, [])
    )
    op = wait_operation(client, r.headers["Azure-AsyncOperation"])
    assert op["status"] == "Failed" and op["error"]["code"] == "UserErrorNoContainersSelectedForOperation", op
    sdk.backup_instances.begin_create_or_update(
        env.rg, env.vault, "blobs", blob_instance(policy_id, account, [blobs.docs]), polling_interval=0
    ).result()
    done = sdk.backup_instances.begin_adhoc_backup(
        env.rg, env.vault, "blobs", {"backupRuleOptions": {"ruleName": "BackupWeekly"}}, polling_interval=0
    ).result()
    assert wait_job(client, env, done.job_id)["status"] == "Completed"
    (rp,) = list(sdk.recovery_points.list(env.rg, env.vault, "blobs"))
    url = f"{env.instance_path('blobs')}/restore?api-version={API}"

    # as files: a blob point is not an archive
    files = {"objectType": "RestoreFilesTargetInfo", "recoveryOption": "FailIfExists",
             "targetDetails": {"url": (server.data_dir / "restores" / "blobs").as_uri(), "filePrefix": "x", "restoreTargetLocationType": "AzureFiles"}}  # fmt: skip
    r = client.post(url, json=restore_request(rp.name, files))
    assert r.status_code == 400 and r.json()["error"]["code"] == "UserErrorRestoreTargetNotSupported", r.text

    def failed_job(target: dict[str, Any]) -> dict[str, Any]:
        r = client.post(url, json=restore_request(rp.name, target))
        assert r.status_code == 202, r.text
        op = wait_operation(client, r.headers["Azure-AsyncOperation"])
        job = wait_job(client, env, op["properties"]["jobId"])
        assert job["status"] == "Failed", job
        return job["errorDetails"][0]

    item = {
        "objectType": "ItemPathBasedRestoreCriteria",
        "itemPath": "not-in-the-point",
        "isPathRelativeToBackupItem": True,
    }
    assert failed_job(target_info(account, restoreCriteria=[item]))["code"] == "UserErrorRestoreItemNotFound"
    # criteria that cannot be right whatever the point holds: 400 at the request (and at validateRestore)
    range_item = {"objectType": "RangeBasedItemLevelRestoreCriteria"}
    for criteria in (
        [{**item, "itemPath": blobs.docs, "renameTo": "Not_A_Container"}],
        [{**item, "itemPath": ""}],
        [{**item, "subItemPathPrefix": "reports/"}],
        [{**range_item, "minMatchingValue": f"{blobs.docs}/z", "maxMatchingValue": f"{blobs.docs}/a"}],
        [{**range_item, "minMatchingValue": f"{blobs.docs}/a"}],
        [{"objectType": "KubernetesClusterRestoreCriteria"}],
        [],
    ):
        for path, body in (
            (url, restore_request(rp.name, target_info(account, restoreCriteria=criteria))),
            (url.replace("/restore?", "/validateRestore?"),
             {"restoreRequestObject": restore_request(rp.name, target_info(account, restoreCriteria=criteria))}),
        ):  # fmt: skip
            r = client.post(path, json=body)
            assert r.status_code == 400, (criteria, r.text)
            assert r.json()["error"]["code"] == "UserErrorInvalidRestoreCriteria", (criteria, r.text)
    nothing = {**item, "itemPath": blobs.docs, "subItemPathPrefix": ["zzz/"]}
    assert failed_job(target_info(account, restoreCriteria=[nothing]))["code"] == "UserErrorNoItemsToRestore"
    unmapped = account_id(f"nomap{uuid.uuid4().hex[:8]}")
    assert failed_job(target_info(unmapped, "RestoreTargetInfo"))["code"] == "UserErrorDatasourceNotMapped"
    # the whole point onto itself, after two blobs changed: refused naming them, nothing written
    container = blob_service(azurite).get_container_client(blobs.docs)
    container.upload_blob("drafts/21.md", b"changed", overwrite=True)
    container.upload_blob("reports/2026/00.txt", b"changed", overwrite=True)
    container.delete_blob("reports/2026/01.txt")
    before = state_of(azurite, blobs.docs)
    error = failed_job(target_info(account, "RestoreTargetInfo"))
    assert error["code"] == "UserErrorBlobAlreadyExists" and "2 blob(s)" in error["message"], error
    assert "drafts/21.md" in error["message"] and "reports/2026/00.txt" in error["message"]
    assert state_of(azurite, blobs.docs) == before

    # an unreachable account: the backup job fails with a UserFacingError
    with Azurite() as gone:
        gone_id = account_id(f"gone{uuid.uuid4().hex[:8]}")
        set_source(server, gone_id, gone.connection_string)
        blob_service(gone).create_container(blobs.docs)
        sdk.backup_instances.begin_create_or_update(
            env.rg, env.vault, "gone", blob_instance(policy_id, gone_id, [blobs.docs]), polling_interval=0
        ).result()
    done = sdk.backup_instances.begin_adhoc_backup(
        env.rg, env.vault, "gone", {"backupRuleOptions": {"ruleName": "BackupWeekly"}}, polling_interval=0
    ).result()
    job = wait_job(client, env, done.job_id)
    assert (
        job["status"] == "Failed" and job["errorDetails"][0]["code"] == "UserErrorStorageAccountUnreachable"
    ), job


def operational_policy() -> dict[str, Any]:
    """Azure's operational blob backup: a retention rule on OperationalStore, no backup rule."""
    return {
        "properties": {
            "objectType": "BackupPolicy",
            "datasourceTypes": [BLOB_TYPE],
            "policyRules": [
                {
                    "objectType": "AzureRetentionRule", "name": "Default", "isDefault": True,
                    "lifecycles": [{
                        "sourceDataStore": {"objectType": "DataStoreInfoBase", "dataStoreType": "OperationalStore"},
                        "deleteAfter": {"objectType": "AbsoluteDeleteOption", "duration": "P30D"},
                    }],
                }
            ],
        }
    }  # fmt: skip


def test_operational_blob_backup_is_accepted_and_validated_but_copies_nothing(
    server: Server, client: httpx.Client, azurite: Any, sdk: DataProtectionMgmtClient
) -> None:
    env = Env(client).create()
    r = client.put(
        f"{env.vault_path}/backupPolicies/operational?api-version={API}", json=operational_policy()
    )
    assert r.status_code == 200, r.text
    policy_id = f"{env.vault_path}/backupPolicies/operational"
    body = blob_instance(policy_id, account_id(f"op{uuid.uuid4().hex[:8]}"), [])
    del body["properties"]["policyInfo"]["policyParameters"]  # operational backup lists no containers
    body["properties"].pop("validationType")  # as Terraform sends it: validated all the same

    # the account is not mapped: configuring fails as the client polls it
    r = client.put(f"{env.instance_path('op')}?api-version={API}", json=body)
    op = wait_operation(client, r.headers["Azure-AsyncOperation"])
    assert op["status"] == "Failed" and op["error"]["code"] == "UserErrorDatasourceNotMapped", op

    set_source(server, body["properties"]["dataSourceInfo"]["resourceID"], azurite.connection_string)
    r = client.put(f"{env.instance_path('op')}?api-version={API}", json=body)
    assert wait_operation(client, r.headers["Azure-AsyncOperation"])["status"] == "Succeeded"
    props = client.get(f"{env.instance_path('op')}?api-version={API}").json()["properties"]
    assert props["currentProtectionState"] == "ProtectionConfigured"
    # nothing is copied: there is no backup rule to run, and no recovery point appears
    r = client.post(f"{env.instance_path('op')}/backup?api-version={API}",
                    json={"backupRuleOptions": {"ruleName": "Default", "triggerOption": {}}})  # fmt: skip
    assert r.status_code == 400 and r.json()["error"]["code"] == "UserErrorInvalidRuleName", r.text
    assert list(sdk.recovery_points.list(env.rg, env.vault, "op")) == []


def test_auto_protection_backs_up_every_container_but_the_excluded_prefixes(
    server: Server, client: httpx.Client, sdk: DataProtectionMgmtClient
) -> None:
    env = Env(client).create()
    sdk.backup_policies.create_or_update(env.rg, env.vault, "blobpolicy", policy_body(BLOB_TYPE))
    with Azurite() as own:  # an account of its own: auto-protection takes every container in it
        service = blob_service(own)
        for name in ("keep-a", "keep-b", "temp-scratch", "test-fixtures"):
            service.create_container(name).upload_blob("x.txt", name.encode())
        account = account_id(f"auto{uuid.uuid4().hex[:8]}")
        set_source(server, account, own.connection_string)
        body = blob_instance(f"{env.vault_path}/backupPolicies/blobpolicy", account, [])
        rules = [{"objectType": "BlobBackupAutoProtectionRule", "mode": "Exclude", "type": "Prefix", "pattern": p}
                 for p in ("temp-", "test-")]  # fmt: skip
        body["properties"]["policyInfo"]["policyParameters"]["backupDatasourceParametersList"] = [{
            "objectType": "BlobBackupDatasourceParametersForAutoProtection",
            "autoProtectionSettings": {"objectType": "BlobBackupRuleBasedAutoProtectionSettings", "enabled": True,
                                       "rules": rules},
        }]  # fmt: skip
        sdk.backup_instances.begin_create_or_update(
            env.rg, env.vault, "auto", body, polling_interval=0
        ).result()
        service.create_container("keep-c").upload_blob("late.txt", b"created after the PUT")
        done = sdk.backup_instances.begin_adhoc_backup(
            env.rg, env.vault, "auto", {"backupRuleOptions": {"ruleName": "BackupWeekly"}}, polling_interval=0
        ).result()
        job = wait_job(client, env, done.job_id)
        assert job["status"] == "Completed", str(job.get("errorDetails"))
        (rp,) = list(sdk.recovery_points.list(env.rg, env.vault, "auto"))
        meta = metadata_of(rp)
        assert meta["containers"] == "keep-a,keep-b,keep-c" and meta["blobs"] == "3", meta


def test_a_damaged_point_restores_nothing_and_leaves_no_container_behind(
    server: Server, client: httpx.Client, azurite: Any, sdk: DataProtectionMgmtClient
) -> None:
    from tests.vaultfiles import flip_a_byte_in_each_stored_pack

    env = Env(client).create()
    blobs = Blobs(azurite)
    _, rp = backed_up(server, client, sdk, env, azurite, [blobs.docs, blobs.media], "blobs")
    assert flip_a_byte_in_each_stored_pack(server, env.vault_path) >= 3
    with Azurite() as other:  # an empty account: whatever the failed restore made would show
        other_id = account_id(f"dmg{uuid.uuid4().hex[:8]}")
        set_source(server, other_id, other.connection_string)
        restored = sdk.backup_instances.begin_trigger_restore(
            env.rg, env.vault, "blobs", restore_request(rp.name, target_info(other_id, "RestoreTargetInfo")),
            polling_interval=0,
        ).result()  # fmt: skip
        job = wait_job(client, env, restored.job_id)
        assert job["status"] == "Failed", job
        assert job["errorDetails"][0]["code"] == "UserErrorRecoveryPointCorrupted", job["errorDetails"]
        assert [c.name for c in blob_service(other).list_containers()] == []


def test_blobs_whose_content_md5_property_is_wrong_back_up_and_restore_as_they_were(
    server: Server, client: httpx.Client, azurite: Any, sdk: DataProtectionMgmtClient
) -> None:
    """Azure keeps whatever Content-MD5 a client sets (Set Blob Properties), right or wrong, and Put
    Blob refuses one that is not the bytes': such blobs restore with their bytes and their recorded
    property, small (one Put Blob) and large (blocks) alike."""
    from azure.storage.blob import ContentSettings

    env = Env(client).create()
    container = f"md5-{uuid.uuid4().hex[:6]}"
    source = blob_service(azurite).create_container(container)
    wrong = bytearray(hashlib.md5(b"something else").digest())
    for name, data in (("small.txt", b"small blob\n" * 10), ("large.bin", os.urandom(3 << 20))):
        source.upload_blob(name, data, metadata={"kind": name})
        source.get_blob_client(name).set_http_headers(
            ContentSettings(content_type="text/plain", content_md5=wrong)
        )
    before = state_of(azurite, container)
    account, rp = backed_up(server, client, sdk, env, azurite, [container], "md5")
    renamed = f"md5-copy-{uuid.uuid4().hex[:6]}"
    whole = target_info(account, restoreCriteria=[{
        "objectType": "ItemPathBasedRestoreCriteria", "itemPath": container, "renameTo": renamed}])  # fmt: skip
    restored = sdk.backup_instances.begin_trigger_restore(
        env.rg, env.vault, "md5", restore_request(rp.name, whole), polling_interval=0
    ).result()
    job = wait_job(client, env, restored.job_id)
    assert job["status"] == "Completed", str(job.get("errorDetails"))
    assert state_of(azurite, renamed) == before  # bytes, settings, the (wrong) Content-MD5, metadata
    # restoring over the restored copy finds every blob there already: nothing is written again
    again = sdk.backup_instances.begin_trigger_restore(
        env.rg, env.vault, "md5", restore_request(rp.name, whole), polling_interval=0
    ).result()
    job = wait_job(client, env, again.job_id)
    assert job["status"] == "Completed", str(job.get("errorDetails"))
    details = job["extendedInfo"]["additionalDetails"]
    assert (details["RestoredBlobs"], details["AlreadyPresentBlobs"]) == ("0", "2"), details


def test_a_blob_whose_metadata_differs_is_not_taken_as_already_restored(
    server: Server, client: httpx.Client, azurite: Any, sdk: DataProtectionMgmtClient
) -> None:
    """Same bytes and Content-MD5 but other metadata or index tags: the target blob is not the
    backed-up one, so a FailIfExists restore over it is refused, naming it. (Setting tags leaves
    the ETag as it was.)"""
    from azure.storage.blob import ContentSettings

    env = Env(client).create()
    container = f"meta-{uuid.uuid4().hex[:6]}"
    source = blob_service(azurite).create_container(container)
    for name in ("a.txt", "b.txt", "c.txt"):
        data = f"{name}\n".encode()
        source.upload_blob(name, data, metadata={"v": "1"}, tags={"t": "1"}, content_settings=ContentSettings(
            content_type="text/plain", content_md5=bytearray(hashlib.md5(data).digest())))  # fmt: skip
    account, rp = backed_up(server, client, sdk, env, azurite, [container], "meta")
    source.get_blob_client("a.txt").set_blob_metadata({"v": "2"})  # same bytes, other metadata
    etag = source.get_blob_client("c.txt").get_blob_properties().etag
    source.get_blob_client("c.txt").set_blob_tags({"t": "2"})  # same bytes and ETag, other tags
    assert source.get_blob_client("c.txt").get_blob_properties().etag == etag
    restored = sdk.backup_instances.begin_trigger_restore(
        env.rg, env.vault, "meta", restore_request(rp.name, target_info(account, "RestoreTargetInfo")),
        polling_interval=0,
    ).result()  # fmt: skip
    job = wait_job(client, env, restored.job_id)
    assert job["status"] == "Failed" and job["errorDetails"][0]["code"] == "UserErrorBlobAlreadyExists", job
    message = job["errorDetails"][0]["message"]
    assert f"{container}/a.txt" in message and f"{container}/c.txt" in message, message
    assert f"{container}/b.txt" not in message  # the same as backed up
    assert source.get_blob_client("a.txt").get_blob_properties().metadata == {"v": "2"}  # untouched
    assert source.get_blob_client("c.txt").get_blob_tags() == {"t": "2"}


def test_a_whole_container_restores_into_its_original_place_around_its_unchanged_blobs(
    server: Server, client: httpx.Client, azurite: Any, sdk: DataProtectionMgmtClient
) -> None:
    """The common recovery: some blobs were deleted, the container is restored whole where it was.
    The blobs still there unchanged (a large one put in blocks has no Content-MD5: its ETag says it
    is the backed-up version) are left; the deleted ones come back."""
    env = Env(client).create()
    container = f"orig-{uuid.uuid4().hex[:6]}"
    source = blob_service(azurite).create_container(container)
    from azure.storage.blob import BlobBlock

    big = source.get_blob_client("big.bin")  # put in blocks, as large uploads are: no Content-MD5
    for i in range(3):
        big.stage_block(f"{i:04d}", os.urandom(1 << 20))
    big.commit_block_list([BlobBlock(f"{i:04d}") for i in range(3)])
    for i in range(3):
        source.upload_blob(f"doc-{i}.txt", f"doc {i}\n".encode(), metadata={"i": str(i)})
    assert source.get_blob_client("big.bin").get_blob_properties().content_settings.content_md5 is None
    before = state_of(azurite, container)
    account, rp = backed_up(server, client, sdk, env, azurite, [container], "orig")
    source.delete_blob("doc-1.txt")
    whole = target_info(
        account, restoreCriteria=[{"objectType": "ItemPathBasedRestoreCriteria", "itemPath": container}]
    )
    restored = sdk.backup_instances.begin_trigger_restore(
        env.rg, env.vault, "orig", restore_request(rp.name, whole), polling_interval=0
    ).result()
    job = wait_job(client, env, restored.job_id)
    assert job["status"] == "Completed", str(job.get("errorDetails"))
    details = job["extendedInfo"]["additionalDetails"]
    assert (details["RestoredBlobs"], details["AlreadyPresentBlobs"]) == ("1", "3"), details
    assert state_of(azurite, container) == before

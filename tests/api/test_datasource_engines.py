"""Which datasource types dpvault backs up is the engine registry's answer, not a list of names: the
PostgreSQL engine serves ``Microsoft.DBforPostgreSQL/servers/databases`` (and ``OssDB``), the flexible
server engine ``Microsoft.DBforPostgreSQL/flexibleServers`` (tests/integration/test_flexible_server.py), the
blob container engine ``Microsoft.Storage/storageAccounts/blobServices`` (test_blob_containers.py). An instance
of a type no engine serves is accepted and shallowly validated, says so, and gets no backups: no
schedule, and an adhoc backup is a 400 -- not a job that fails later."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from dpvault.engines.blobs.engine import BlobContainerEngine
from dpvault.engines.postgres import PostgresEngine
from dpvault.engines.postgres.flexible import FlexibleServerEngine
from dpvault.engines.registry import Engines
from tests.support import API, Env, instance_body, policy_body, wait_operation

FLEX = "Microsoft.DBforPostgreSQL/flexibleServers"
BLOB = "Microsoft.Storage/storageAccounts/blobServices"
DISK = "Microsoft.Compute/disks"  # no engine (yet)


def test_the_registry_maps_types_to_engines() -> None:
    engines = Engines([PostgresEngine(None), FlexibleServerEngine(None), BlobContainerEngine()])
    pg = engines.for_type("Microsoft.DBforPostgreSQL/servers/databases")
    assert isinstance(pg, PostgresEngine)
    assert (
        engines.for_type("OssDB") is pg
        and engines.for_type("microsoft.dbforpostgresql/SERVERS/databases") is pg
    )
    assert isinstance(engines.for_type(FLEX), FlexibleServerEngine)
    assert isinstance(engines.for_type(FLEX.upper()), FlexibleServerEngine)
    assert isinstance(engines.for_type(BLOB), BlobContainerEngine)
    for unserved in (
        "Microsoft.DBforPostgreSQL/flexibleServers/databases",
        "Microsoft.Storage/storageAccounts",
        DISK,
        "",
        None,
    ):
        assert engines.for_type(unserved) is None
    assert engines.types == [
        "microsoft.dbforpostgresql/flexibleservers",
        "microsoft.dbforpostgresql/servers/databases",
        "microsoft.storage/storageaccounts/blobservices",
    ]
    with pytest.raises(ValueError, match="two engines"):
        Engines([PostgresEngine(None), PostgresEngine(None)])


def _disk_instance(policy_id: str) -> dict[str, Any]:
    """A managed disk, a type no engine serves."""
    body = instance_body(policy_id, validation="DeepValidation")
    disk = "/subscriptions/f75d8d8b-6735-4697-82e1-1a7a3ff0d5d4/resourceGroups/rg/providers/Microsoft.Compute/disks/disk1"
    info = {"objectType": "Datasource", "resourceID": disk, "resourceName": "disk1", "resourceType": DISK,
            "resourceLocation": "westus", "datasourceType": DISK}  # fmt: skip
    props = body["properties"]
    props["dataSourceInfo"] = info
    props["dataSourceSetInfo"] = {**info, "objectType": "DatasourceSet"}
    del props["datasourceAuthCredentials"]
    return body


def test_an_instance_no_engine_serves_is_configured_says_so_and_gets_no_backups(client: httpx.Client) -> None:
    env = Env(client).create()
    r = client.put(f"{env.policy_id}?api-version={API}", json=policy_body(DISK))
    assert r.status_code == 200, r.text
    r = env.put_instance("blobs", _disk_instance(env.policy_id))
    assert r.status_code == 201, r.text
    assert wait_operation(client, r.headers["Azure-AsyncOperation"])["status"] == "Succeeded"
    props = client.get(f"{env.instance_path('blobs')}?api-version={API}").json()["properties"]
    assert props["currentProtectionState"] == "ProtectionConfigured"  # what Terraform waits for
    assert props["protectionErrorDetails"]["code"] == "UserErrorDatasourceTypeNotSupported"
    assert DISK in props["protectionErrorDetails"]["message"]
    assert props["protectionStatus"]["errorDetails"]["code"] == "UserErrorDatasourceTypeNotSupported"

    r = client.post(
        f"{env.instance_path('blobs')}/backup?api-version={API}",
        json={
            "backupRuleOptions": {
                "ruleName": "BackupWeekly",
                "triggerOption": {"retentionTagOverride": "Default"},
            }
        },
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "UserErrorDatasourceTypeNotSupported", r.text
    time.sleep(0.5)
    jobs = client.get(f"{env.vault_path}/backupJobs?api-version={API}").json()["value"]
    assert [j["properties"]["operation"] for j in jobs] == ["ConfigureBackup"]  # the deep validation only
    assert jobs[0]["properties"]["status"] == "Completed"

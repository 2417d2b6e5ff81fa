"""End to end with the official clients: azure-mgmt-resource and azure-mgmt-dataprotection against a
real ``dpvault serve`` over HTTPS, trusting its generated CA, authenticated with ``dpvault token``.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.dataprotection import DataProtectionMgmtClient
from azure.mgmt.dataprotection import models as m
from azure.mgmt.resource.resources import ResourceManagementClient

from tests.support import SUB, PostgresServer, Server

pytestmark = pytest.mark.e2e

SEED = (
    Path(__file__).resolve().parents[1]
    / "spec"
    / "examples"
    / "BackupInstanceOperations"
    / "PutBackupInstance.json"
)
POLICY = (
    Path(__file__).resolve().parents[1]
    / "spec"
    / "examples"
    / "PolicyCRUD"
    / "CreateOrUpdateBackupPolicy.json"
)


class DpvaultCredential:
    """A TokenCredential that hands out tokens from ``dpvault token``."""

    def __init__(self, server: Server) -> None:
        self._server = server
        self.calls = 0

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.calls += 1
        return AccessToken(self._server.token(), int(time.time()) + 3600)


def _clients(server: Server, **kwargs: Any) -> DataProtectionMgmtClient:
    return DataProtectionMgmtClient(
        DpvaultCredential(server), SUB, base_url=server.base, connection_verify=server.ca, **kwargs
    )


def _seed_body(policy_id: str) -> dict[str, Any]:
    """The seed's exact request body, with the policy id pointed at the policy this test created."""
    body = json.loads(SEED.read_text())["parameters"]["parameters"]
    body["properties"]["policyInfo"]["policyId"] = policy_id
    return body


@pytest.fixture(scope="module")
def vault(server: Server) -> tuple[str, str, str]:
    """Resource group (azure-mgmt-resource), vault and policy (azure-mgmt-dataprotection, default api-version)."""
    rg = f"sdk-rg-{uuid.uuid4().hex[:6]}"
    vault_name = f"sdk-vault-{uuid.uuid4().hex[:6]}"
    resources = ResourceManagementClient(
        DpvaultCredential(server), SUB, base_url=server.base, connection_verify=server.ca
    )
    group = resources.resource_groups.create_or_update(rg, {"location": "westus"})
    assert group.name == rg
    assert resources.resource_groups.check_existence(rg)

    client = _clients(server)  # the SDK's default api-version; 2.2.0 refuses to build vaults at 2023-01-01
    poller = client.backup_vaults.begin_create_or_update(
        rg,
        vault_name,
        m.BackupVaultResource(
            location="westus",
            tags={"team": "backup"},
            properties=m.BackupVault(
                storage_settings=[m.StorageSetting(datastore_type="VaultStore", type="LocallyRedundant")]
            ),
        ),
        polling_interval=0,
    )
    created = poller.result()
    assert created.name == vault_name
    assert created.properties.provisioning_state == "Succeeded"

    policy_body = json.loads(POLICY.read_text())["parameters"]["parameters"]
    policy_body["properties"]["datasourceTypes"] = ["Microsoft.DBforPostgreSQL/servers/databases"]
    policy = client.backup_policies.create_or_update(rg, vault_name, "OSSDBPolicy", policy_body)
    assert policy.name == "OSSDBPolicy"
    return rg, vault_name, policy.id


@pytest.mark.parametrize("api_version", ["2023-01-01", None], ids=["2023-01-01", "sdk-default"])
def test_seed_backup_instance_round_trip(
    server: Server, vault: tuple[str, str, str], api_version: str | None
) -> None:
    rg, vault_name, policy_id = vault
    client = _clients(server, **({"api_version": api_version} if api_version else {}))
    name = f"testInstance1-{api_version or 'default'}"

    instance = client.backup_instances.begin_create_or_update(
        rg, vault_name, name, _seed_body(policy_id), polling_interval=0
    ).result()
    assert instance.name == name
    assert instance.properties.provisioning_state == "Succeeded"
    assert instance.properties.protection_status.status == "ProtectionConfigured"
    assert instance.properties.current_protection_state == "ProtectionConfigured"
    assert instance.properties.friendly_name == "harshitbi2"
    assert instance.properties.policy_info.policy_id.lower() == policy_id.lower()
    assert instance.tags == {"key1": "val1"}

    got = client.backup_instances.get(rg, vault_name, name)
    assert got.id == instance.id
    assert got.properties.data_source_info.resource_name == "testdb"

    listed = [bi.name for bi in client.backup_instances.list(rg, vault_name)]
    assert name in listed

    client.backup_instances.begin_delete(rg, vault_name, name, polling_interval=0).result()
    with pytest.raises(ResourceNotFoundError):
        client.backup_instances.get(rg, vault_name, name)


def test_validate_for_backup_through_the_sdk(
    server: Server, vault: tuple[str, str, str], source_pg: PostgresServer
) -> None:
    """The seed's datasource made real: database testdb, its connection string under the seed's secret URI."""
    rg, vault_name, policy_id = vault
    if not source_pg.sql("postgres", "SELECT 1 FROM pg_database WHERE datname = 'testdb'"):
        source_pg.create_database("testdb")
    server.set_secret("https://samplevault.vault.azure.net/secrets/credentials", source_pg.ado("testdb"))
    client = _clients(server, api_version="2023-01-01")
    result = client.backup_instances.begin_validate_for_backup(
        rg, vault_name, {"backupInstance": _seed_body(policy_id)["properties"]}, polling_interval=0
    ).result()
    assert result.object_type == "OperationJobExtendedInfo"


def test_sdk_surfaces_cloud_errors(server: Server, vault: tuple[str, str, str]) -> None:
    rg, vault_name, policy_id = vault
    client = _clients(server, api_version="2023-01-01")
    body = _seed_body(policy_id.replace("OSSDBPolicy", "NoSuchPolicy"))
    with pytest.raises(HttpResponseError) as raised:
        client.backup_instances.begin_create_or_update(rg, vault_name, "bad", body, polling_interval=0)
    assert raised.value.status_code == 400
    assert raised.value.error.code == "BackupPolicyNotFound"
    with pytest.raises(ResourceNotFoundError):
        client.backup_vaults.get(rg, "no-such-vault")


def test_vault_lists_and_delete(server: Server) -> None:
    client = _clients(server)
    rg = f"sdk-rg-{uuid.uuid4().hex[:6]}"
    names = [f"v{i}-{uuid.uuid4().hex[:4]}" for i in range(3)]
    for n in names:
        client.backup_vaults.begin_create_or_update(
            rg, n,
            m.BackupVaultResource(location="westus", properties=m.BackupVault(storage_settings=[m.StorageSetting(datastore_type="VaultStore", type="LocallyRedundant")])),
            polling_interval=0,
        ).result()  # fmt: skip
    assert sorted(v.name for v in client.backup_vaults.get_in_resource_group(rg)) == sorted(names)
    assert set(names) <= {v.name for v in client.backup_vaults.get_in_subscription()}
    client.backup_vaults.begin_delete(rg, names[0], polling_interval=0).result()
    with pytest.raises(ResourceNotFoundError):
        client.backup_vaults.get(rg, names[0])

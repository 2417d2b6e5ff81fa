"""Soft delete, vault soft delete and multi-user authorization through the official Python SDK
(azure-mgmt-dataprotection, its default api-version 2026-06-01) against a real server with the
manual clock, backing up a real database (issue 13 items 1 and 3).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.dataprotection import DataProtectionMgmtClient
from azure.mgmt.dataprotection import models as m

from tests.integration.test_protection import daily_policy, make_sample_database
from tests.support import SUB, PostgresServer, Server, instance_body

pytestmark = pytest.mark.e2e

SECURITY_TENANT = "5ec00000-0000-4000-8000-0000000000e2"
WRONG_TENANT = "0e400000-0000-4000-8000-0000000000e2"
DAY = 86400.0


class Credential:
    """Tokens from ``dpvault token`` for one tenant (the server's own by default)."""

    def __init__(self, server: Server, *args: str) -> None:
        self.server, self.args = server, args

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.server.token(*self.args), int(time.time()) + 3600)


@pytest.fixture(scope="module")
def server(make_server: Callable[..., Server]) -> Server:
    return make_server("--clock", "manual")


def sdk(server: Server, sub: str = SUB, *args: str) -> DataProtectionMgmtClient:
    return DataProtectionMgmtClient(
        Credential(server, *args), sub, base_url=server.base, connection_verify=server.ca
    )


def advance(server: Server, seconds: float) -> dict[str, Any]:
    with server.client() as c:
        r = c.post("/dpvault/clock/advance", json={"seconds": seconds}, timeout=120)
    assert r.status_code == 200 and r.json()["complete"], r.text
    return r.json()


def storage() -> list[m.StorageSetting]:
    return [m.StorageSetting(datastore_type="VaultStore", type="LocallyRedundant")]


def soft_vault(
    client: DataProtectionMgmtClient, rg: str, name: str, state: str = "On", days: float = 14
) -> None:
    client.backup_vaults.begin_create_or_update(
        rg, name,
        m.BackupVaultResource(location="westus", properties=m.BackupVault(
            storage_settings=storage(),
            security_settings=m.SecuritySettings(
                soft_delete_settings=m.SoftDeleteSettings(state=state, retention_duration_in_days=days)),
        )),
        polling_interval=0,
    ).result()  # fmt: skip


class Protected:
    """A soft-delete vault with the daily policy and a deeply validated instance of a real database."""

    def __init__(
        self, server: Server, pg: PostgresServer, client: DataProtectionMgmtClient | None = None
    ) -> None:
        self.server, self.pg = server, pg
        self.client = client or sdk(server)
        self.rg = f"sdk-sd-{uuid.uuid4().hex[:6]}"
        self.vault = f"vault-{uuid.uuid4().hex[:6]}"
        self.name = "bi1"

    def create(self, state: str = "On") -> Protected:
        soft_vault(self.client, self.rg, self.vault, state)
        policy = self.client.backup_policies.create_or_update(self.rg, self.vault, "daily", daily_policy())
        database = make_sample_database(self.pg, f"sdk_{uuid.uuid4().hex[:8]}", customers=20, orders=30)
        uri = f"https://kv{uuid.uuid4().hex[:6]}.vault.azure.net/secrets/{database.replace('_', '-')}"
        self.server.set_secret(uri, self.pg.ado(database))
        body = instance_body(policy.id, database=database, secret_uri=uri, validation="DeepValidation")
        bi = self.client.backup_instances.begin_create_or_update(
            self.rg, self.vault, self.name, body, polling_interval=0
        ).result()
        assert bi.properties.current_protection_state == "ProtectionConfigured"
        return self

    def backup(self) -> str:
        result = self.client.backup_instances.begin_adhoc_backup(
            self.rg, self.vault, self.name,
            {"backupRuleOptions": {"ruleName": "BackupDaily", "triggerOption": {"retentionTagOverride": "Default"}}},
            polling_interval=0,
        ).result()  # fmt: skip
        advance(self.server, 0)
        job = self.client.jobs.get(self.rg, self.vault, result.job_id)
        assert job.properties.status == "Completed", job.properties
        return job.properties.extended_info.additional_details["RecoveryPointId"]

    def points(self) -> list[str]:
        return sorted(p.name for p in self.client.recovery_points.list(self.rg, self.vault, self.name))

    def drop(self) -> None:
        with self.server.client() as c:
            c.delete(f"/subscriptions/{SUB}/resourceGroups/{self.rg}?api-version=2021-04-01")


@pytest.fixture
def protected(server: Server, source_pg: PostgresServer) -> Iterator[Protected]:
    p = Protected(server, source_pg).create()
    yield p
    p.drop()


def test_soft_delete_undelete_and_backups_resume(protected: Protected, server: Server) -> None:
    p, c = protected, protected.client
    point = p.backup()
    c.backup_instances.begin_delete(p.rg, p.vault, p.name, polling_interval=0).result()
    with pytest.raises(ResourceNotFoundError):
        c.backup_instances.get(p.rg, p.vault, p.name)
    (deleted,) = list(c.deleted_backup_instances.list(p.rg, p.vault))
    assert deleted.name == p.name
    assert deleted.properties.current_protection_state == "SoftDeleted"
    assert deleted.properties.deletion_info.scheduled_purge_time
    got = c.deleted_backup_instances.get(p.rg, p.vault, p.name)
    assert (
        got.properties.deletion_info.delete_activity_id == deleted.properties.deletion_info.delete_activity_id
    )
    with pytest.raises(HttpResponseError) as raised:  # a vault holding soft-deleted instances
        c.backup_vaults.begin_delete(p.rg, p.vault, polling_interval=0).result()
    assert raised.value.status_code == 409 and raised.value.error.code == "BackupVaultNotEmpty"

    c.deleted_backup_instances.begin_undelete(p.rg, p.vault, p.name, polling_interval=0).result()
    assert list(c.deleted_backup_instances.list(p.rg, p.vault)) == []
    bi = c.backup_instances.get(p.rg, p.vault, p.name)
    assert bi.properties.current_protection_state == "ProtectionStopped"
    assert p.points() == [point]
    c.backup_instances.begin_resume_protection(p.rg, p.vault, p.name, polling_interval=0).result()
    assert (
        c.backup_instances.get(p.rg, p.vault, p.name).properties.current_protection_state
        == "ProtectionConfigured"
    )
    advance(server, DAY)
    assert set(p.points()) - {point}, "the schedule took no backup after resumeProtection"


def test_purge_after_retention(protected: Protected, server: Server) -> None:
    p, c = protected, protected.client
    p.backup()
    c.backup_instances.begin_delete(p.rg, p.vault, p.name, polling_interval=0).result()
    advance(server, 13 * DAY)
    assert [d.name for d in c.deleted_backup_instances.list(p.rg, p.vault)] == [p.name]
    assert advance(server, 2 * DAY)["purged"] >= 1
    assert list(c.deleted_backup_instances.list(p.rg, p.vault)) == []
    with pytest.raises(HttpResponseError) as raised:
        c.deleted_backup_instances.get(p.rg, p.vault, p.name)
    assert raised.value.status_code == 404 and raised.value.error.code == "UserErrorGenericResourceNotFound"
    c.backup_vaults.begin_delete(p.rg, p.vault, polling_interval=0).result()  # nothing holds it now


def test_always_on_cannot_be_turned_off(server: Server) -> None:
    c = sdk(server)
    rg, name = f"sdk-ao-{uuid.uuid4().hex[:6]}", f"vault-{uuid.uuid4().hex[:6]}"
    soft_vault(c, rg, name, "AlwaysOn", 30)
    for state in ("Off", "On"):
        patch = m.PatchResourceRequestInput(properties=m.PatchBackupVaultInput(
            security_settings=m.SecuritySettings(soft_delete_settings=m.SoftDeleteSettings(state=state))))  # fmt: skip
        with pytest.raises(HttpResponseError) as raised:
            c.backup_vaults.begin_update(rg, name, patch, polling_interval=0).result()
        assert raised.value.status_code == 400
        assert raised.value.error.code == "UserErrorSoftDeleteAlwaysOnCannotBeDisabled"
    vault = c.backup_vaults.get(rg, name)
    assert vault.properties.security_settings.soft_delete_settings.state == "AlwaysOn"
    assert vault.properties.secure_score == "Adequate" and vault.properties.bcdr_security_level == "Good"


def test_vault_soft_delete_and_undelete(server: Server) -> None:
    c = sdk(server)
    rg, name = f"sdk-dv-{uuid.uuid4().hex[:6]}", f"vault-{uuid.uuid4().hex[:6]}"
    soft_vault(c, rg, name)
    c.backup_policies.create_or_update(rg, name, "daily", daily_policy())
    c.backup_vaults.begin_delete(rg, name, polling_interval=0).result()
    with pytest.raises(ResourceNotFoundError):
        c.backup_vaults.get(rg, name)
    (deleted,) = [
        d
        for d in c.deleted_backup_vaults.list_by_location("westus")
        if d.properties.original_backup_vault_name == name
    ]
    assert deleted.properties.resource_deletion_info.scheduled_purge_time
    assert c.deleted_backup_vaults.get("westus", deleted.name).properties.original_backup_vault_id.endswith(
        f"/backupVaults/{name}"
    )
    restored = c.backup_vaults.begin_create_or_update(
        rg, name, m.BackupVaultResource(location="westus", properties=m.BackupVault(storage_settings=storage())),
        x_ms_deleted_vault_id=deleted.id, polling_interval=0,
    ).result()  # fmt: skip
    assert restored.properties.provisioning_state == "Succeeded"
    assert restored.properties.security_settings.soft_delete_settings.state == "On"
    assert [p.name for p in c.backup_policies.list(rg, name)] == ["daily"]
    assert all(
        d.properties.original_backup_vault_name != name
        for d in c.deleted_backup_vaults.list_by_location("westus")
    )


def test_multi_user_authorization(protected: Protected, server: Server) -> None:
    """A guard in another tenant's subscription: deleting the instance is refused until the guard's
    tenant unlocks it (an auxiliary token of that tenant); a wrong tenant's token is refused."""
    p, c = protected, protected.client
    guard_sub = str(uuid.uuid4())
    admin = sdk(server, guard_sub, "--tenant", SECURITY_TENANT)
    guard_rg = f"sdk-guard-{uuid.uuid4().hex[:6]}"
    guard = admin.resource_guards.put(guard_rg, "guard1", m.ResourceGuardResource(location="westus"))
    assert guard.properties.provisioning_state == "Succeeded"
    aux = f"Bearer {server.token('--tenant', SECURITY_TENANT)}"
    wrong = f"Bearer {server.token('--tenant', WRONG_TENANT)}"
    proxy = m.ResourceGuardProxyBaseResource(
        properties=m.ResourceGuardProxyBase(resource_guard_resource_id=guard.id)
    )
    with pytest.raises(HttpResponseError) as raised:
        c.dpp_resource_guard_proxy.create_or_update(p.rg, p.vault, "DppResourceGuardProxy", proxy)
    assert raised.value.status_code == 403 and raised.value.error.code == "LinkedAuthorizationFailed"
    linked = c.dpp_resource_guard_proxy.create_or_update(
        p.rg, p.vault, "DppResourceGuardProxy", proxy, headers={"x-ms-authorization-auxiliary": aux}
    )
    assert linked.properties.resource_guard_resource_id == guard.id
    assert c.backup_vaults.get(p.rg, p.vault).properties.is_vault_protected_by_resource_guard is True

    with pytest.raises(HttpResponseError) as raised:
        c.backup_instances.begin_delete(p.rg, p.vault, p.name, polling_interval=0).result()
    assert raised.value.status_code == 403 and raised.value.error.code == "LinkedAuthorizationFailed"
    bi_id = c.backup_instances.get(p.rg, p.vault, p.name).id
    unlock = m.UnlockDeleteRequest(
        resource_guard_operation_requests=[f"{guard.id}/deleteBackupInstanceRequests/default"],
        resource_to_be_deleted=bi_id,
    )
    for token in (None, wrong):
        with pytest.raises(HttpResponseError) as raised:
            c.dpp_resource_guard_proxy.unlock_delete(
                p.rg, p.vault, "DppResourceGuardProxy", unlock, x_ms_authorization_auxiliary=token
            )
        assert raised.value.status_code == 403 and raised.value.error.code == "LinkedAuthorizationFailed"
    granted = c.dpp_resource_guard_proxy.unlock_delete(
        p.rg, p.vault, "DppResourceGuardProxy", unlock, x_ms_authorization_auxiliary=aux
    )
    assert granted.unlock_delete_expiry_time
    c.backup_instances.begin_delete(
        p.rg, p.vault, p.name, polling_interval=0
    ).result()  # now accepted: soft-deleted
    assert [d.name for d in c.deleted_backup_instances.list(p.rg, p.vault)] == [p.name]

    # removing the guard is itself critical
    with pytest.raises(HttpResponseError) as raised:
        c.dpp_resource_guard_proxy.delete(p.rg, p.vault, "DppResourceGuardProxy")
    assert raised.value.status_code == 403
    unlock = m.UnlockDeleteRequest(
        resource_guard_operation_requests=[f"{guard.id}/deleteResourceGuardProxyRequests/default"],
        resource_to_be_deleted=linked.id,
    )
    c.dpp_resource_guard_proxy.unlock_delete(
        p.rg, p.vault, "DppResourceGuardProxy", unlock, x_ms_authorization_auxiliary=aux
    )
    c.dpp_resource_guard_proxy.delete(p.rg, p.vault, "DppResourceGuardProxy")
    assert c.backup_vaults.get(p.rg, p.vault).properties.is_vault_protected_by_resource_guard is False
    with server.client(server.token("--tenant", SECURITY_TENANT)) as sec:
        sec.delete(f"/subscriptions/{guard_sub}/resourceGroups/{guard_rg}?api-version=2021-04-01")


def test_newest_js_sdk_api_version_is_accepted(server: Server) -> None:
    """@azure/arm-dataprotection's default api-version (2026-04-01-preview)."""
    with server.client() as c:
        r = c.get(
            f"/subscriptions/{SUB}/providers/Microsoft.DataProtection/backupVaults?api-version=2026-04-01-preview"
        )
    assert r.status_code == 200, r.text
    assert isinstance(r.json()["value"], list)

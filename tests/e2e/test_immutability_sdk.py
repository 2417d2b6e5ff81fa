"""Immutable vaults through the official Python SDK (its default api-version) against a real server
with the manual clock and real backups (issue 13 item 2): in an Unlocked or Locked vault no recovery
point goes before its expiry -- not by an instance delete, not by a resource-group delete, not by a
policy that would keep points for a shorter time, not by the purge of a soft-deleted instance --
and Locked cannot be undone."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.dataprotection import models as m

from tests.e2e.test_security_sdk import DAY, Protected, advance, sdk, server, storage
from tests.integration.test_protection import daily_policy
from tests.support import SUB, PostgresServer, Server

pytestmark = pytest.mark.e2e
__all__ = ["server"]  # the module-scoped manual-clock server of test_security_sdk


def vault(client, rg: str, name: str, immutability: str, soft: str = "Off") -> None:  # type: ignore[no-untyped-def]
    client.backup_vaults.begin_create_or_update(
        rg, name,
        m.BackupVaultResource(location="westus", properties=m.BackupVault(
            storage_settings=storage(),
            security_settings=m.SecuritySettings(
                soft_delete_settings=m.SoftDeleteSettings(state=soft, retention_duration_in_days=14),
                immutability_settings=m.ImmutabilitySettings(state=immutability)),
        )),
        polling_interval=0,
    ).result()  # fmt: skip


class Immutable(Protected):
    def __init__(self, server: Server, pg: PostgresServer, immutability: str, soft: str = "Off") -> None:
        super().__init__(server, pg)
        self.immutability, self.soft = immutability, soft

    def create(self, state: str = "Off") -> Immutable:
        super().create(self.soft)
        vault(self.client, self.rg, self.vault, self.immutability, self.soft)
        return self

    def backup_tagged(self, tag: str) -> str:
        result = self.client.backup_instances.begin_adhoc_backup(
            self.rg, self.vault, self.name,
            {"backupRuleOptions": {"ruleName": "BackupDaily", "triggerOption": {"retentionTagOverride": tag}}},
            polling_interval=0,
        ).result()  # fmt: skip
        advance(self.server, 0)
        job = self.client.jobs.get(self.rg, self.vault, result.job_id)
        assert job.properties.status == "Completed", job.properties
        return job.properties.extended_info.additional_details["RecoveryPointId"]


@pytest.fixture
def unlocked(server: Server, source_pg: PostgresServer) -> Iterator[Immutable]:
    p = Immutable(server, source_pg, "Unlocked").create()
    yield p
    vault(p.client, p.rg, p.vault, "Disabled")
    p.drop()


def code(raised: pytest.ExceptionInfo[HttpResponseError]) -> str:
    return str(raised.value.error.code if raised.value.error else raised.value.reason)


def test_locked_cannot_be_undone_unlocked_can(server: Server) -> None:
    client = sdk(server)
    rg = f"sdk-imm-{uuid.uuid4().hex[:6]}"
    vault(client, rg, "v-unlocked", "Unlocked")
    vault(client, rg, "v-unlocked", "Disabled")  # Unlocked may be switched off
    assert (
        client.backup_vaults.get(rg, "v-unlocked").properties.security_settings.immutability_settings.state
        == "Disabled"
    )
    vault(client, rg, "v-locked", "Locked")
    for weaker in ("Unlocked", "Disabled"):
        with pytest.raises(HttpResponseError) as raised:
            vault(client, rg, "v-locked", weaker)
        assert raised.value.status_code == 400 and code(raised) == "UserErrorImmutabilityLocked"
    assert (
        client.backup_vaults.get(rg, "v-locked").properties.security_settings.immutability_settings.state
        == "Locked"
    )


def test_no_deletion_path_takes_an_unexpired_point(unlocked: Immutable, server: Server) -> None:
    p, c = unlocked, unlocked.client
    point = p.backup_tagged("Default")  # kept 3 days (daily_policy)
    with pytest.raises(HttpResponseError) as raised:  # instance delete
        c.backup_instances.begin_delete(p.rg, p.vault, p.name, polling_interval=0).result()
    assert (
        raised.value.status_code == 409 and code(raised) == "UserErrorImmutableVaultRecoveryPointsNotExpired"
    )
    with server.client() as raw:  # resource-group delete
        r = raw.delete(f"/subscriptions/{SUB}/resourceGroups/{p.rg}?api-version=2021-04-01")
    assert (
        r.status_code == 409
        and r.json()["error"]["code"] == "UserErrorImmutableVaultRecoveryPointsNotExpired"
    ), r.text
    shorter = daily_policy()
    default = next(r for r in shorter["properties"]["policyRules"] if r["name"] == "Default")
    default["lifecycles"][0]["deleteAfter"]["duration"] = "P1D"
    with pytest.raises(HttpResponseError) as raised:  # a policy in use keeping points for less time
        c.backup_policies.create_or_update(p.rg, p.vault, "daily", shorter)
    assert raised.value.status_code == 400 and code(raised) == "UserErrorImmutableVaultRetentionReduction"
    longer = daily_policy()
    next(r for r in longer["properties"]["policyRules"] if r["name"] == "Default")["lifecycles"][0][
        "deleteAfter"
    ]["duration"] = "P5D"
    c.backup_policies.create_or_update(p.rg, p.vault, "daily", longer)  # longer is fine
    assert p.points() == [point]
    c.backup_instances.begin_suspend_backups(
        p.rg, p.vault, p.name, polling_interval=0
    ).result()  # no new points
    advance(server, 4 * DAY)  # the point expires (3 days after it was taken) and retention takes it
    assert p.points() == []
    c.backup_instances.begin_delete(p.rg, p.vault, p.name, polling_interval=0).result()  # nothing unexpired
    with pytest.raises(ResourceNotFoundError):
        c.backup_instances.get(p.rg, p.vault, p.name)


def test_a_soft_deleted_instances_purge_waits_for_its_points(
    server: Server, source_pg: PostgresServer
) -> None:
    p = Immutable(server, source_pg, "Unlocked", soft="On").create()
    c = p.client
    try:
        point = p.backup_tagged("Weekly")  # kept 4 weeks: beyond the 14 days of soft delete
        c.backup_instances.begin_delete(
            p.rg, p.vault, p.name, polling_interval=0
        ).result()  # a soft delete: allowed
        advance(server, 15 * DAY)  # the purge was due; the point has not expired
        (deleted,) = list(c.deleted_backup_instances.list(p.rg, p.vault))
        assert deleted.name == p.name
        advance(server, 14 * DAY)  # now it has (28 days)
        assert list(c.deleted_backup_instances.list(p.rg, p.vault)) == []
        assert point
    finally:
        vault(p.client, p.rg, p.vault, "Disabled", soft="On")
        p.drop()

"""Resource guards and multi-user authorization over raw HTTP (issue 13 item 3).

dpvault's mapping (no RBAC): the guard's owner is the tenant that owns the guard's subscription; a
request speaks for it with its own token or a token of that tenant in x-ms-authorization-auxiliary.
Every refusal is 403 LinkedAuthorizationFailed (target resourceGuardOperationRequests).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support import SUB, Env, Server, instance_body, rg_path, wait_operation

API = "2026-06-01"
SECURITY_TENANT = "5ec00000-0000-4000-8000-00000000000a"
OTHER_TENANT = "0e400000-0000-4000-8000-00000000000b"
DP = "Microsoft.DataProtection/backupVaults"


@pytest.fixture(scope="module")
def admin(server: Server) -> Iterator[httpx.Client]:
    """The security admin: a token of the tenant that owns the guards' subscription."""
    with server.client(server.token("--tenant", SECURITY_TENANT)) as c:
        yield c


def q(path: str) -> str:
    return f"{path}?api-version={API}"


def refused(r: httpx.Response, words: str = "") -> None:
    assert r.status_code == 403, r.text
    error = r.json()["error"]
    assert (
        error["code"] == "LinkedAuthorizationFailed" and error["target"] == "resourceGuardOperationRequests"
    ), r.text
    assert words in error["message"], r.text


class Guarded:
    """A vault (soft delete On) with a policy and a configured instance, and a guard in the security
    tenant's subscription."""

    def __init__(self, client: httpx.Client, admin: httpx.Client, server: Server) -> None:
        self.c, self.admin, self.server = client, admin, server
        self.env = Env(client)
        self.guard_sub = str(uuid.uuid4())
        self.guard_rg = f"rg-guard-{uuid.uuid4().hex[:6]}"
        self.guard = f"{rg_path(self.guard_rg, self.guard_sub)}/providers/Microsoft.DataProtection/resourceGuards/guard1"
        self.proxy = f"{self.env.vault_path}/backupResourceGuardProxies/DppResourceGuardProxy"
        self.aux = {"x-ms-authorization-auxiliary": f"Bearer {server.token('--tenant', SECURITY_TENANT)}"}

    def create(self, exclusions: list[str] | None = None) -> Guarded:
        self.env.create()
        r = self.c.patch(
            q(self.env.vault_path),
            json={"properties": {"securitySettings": {"softDeleteSettings": {"state": "On", "retentionDurationInDays": 30}, "immutabilitySettings": {"state": "Unlocked"}}}},
        )  # fmt: skip
        assert r.status_code == 200, r.text
        body: dict[str, Any] = {"location": "westus"}
        if exclusions is not None:
            body["properties"] = {"vaultCriticalOperationExclusionList": exclusions}
        r = self.admin.put(q(self.guard), json=body)
        assert r.status_code == 201, r.text
        self.env.create_instance("bi1")
        r = self.c.put(
            q(self.proxy), headers=self.aux, json={"properties": {"resourceGuardResourceId": self.guard}}
        )
        assert r.status_code == 200, r.text
        return self

    def request(self, kind: str) -> list[str]:
        return [f"{self.guard}/{kind}/default"]

    @property
    def instance(self) -> str:
        return self.env.instance_path("bi1")

    def unlock(self, resource: str, kind: str, headers: dict[str, str] | None = None) -> httpx.Response:
        return self.c.post(
            q(f"{self.proxy}/unlockDelete"),
            headers=headers if headers is not None else self.aux,
            json={"resourceGuardOperationRequests": self.request(kind), "resourceToBeDeleted": resource},
        )

    def drop(self) -> None:
        self.c.delete(f"{rg_path(self.env.rg)}?api-version=2021-04-01")
        self.admin.delete(f"{rg_path(self.guard_rg, self.guard_sub)}?api-version=2021-04-01")


@pytest.fixture
def guarded(client: httpx.Client, admin: httpx.Client, server: Server) -> Iterator[Guarded]:
    g = Guarded(client, admin, server).create()
    yield g
    g.drop()


def test_resource_guard_crud_and_request_objects(client: httpx.Client, admin: httpx.Client) -> None:
    sub, rg = str(uuid.uuid4()), f"rg-g-{uuid.uuid4().hex[:6]}"
    guard = f"{rg_path(rg, sub)}/providers/Microsoft.DataProtection/resourceGuards/g1"
    try:
        r = admin.put(q(guard), json={"location": "westus", "tags": {"k": "v"}})
        assert r.status_code == 201, r.text
        body = r.json()
        props = body["properties"]
        assert body["type"] == "Microsoft.DataProtection/resourceGuards" and body["tags"] == {"k": "v"}
        assert (
            props["provisioningState"] == "Succeeded" and props["vaultCriticalOperationExclusionList"] == []
        )
        ops = {o["vaultCriticalOperation"] for o in props["resourceGuardOperations"]}
        assert {
            f"{DP}/backupInstances/delete",
            f"{DP}/backupResourceGuardProxies/delete",
            f"{DP}/write#reduceSoftDeleteSecurity",
        } <= ops
        r = admin.put(
            q(guard),
            json={
                "location": "westus",
                "properties": {
                    "vaultCriticalOperationExclusionList": [f"{DP}/backupInstances/SUSPENDBACKUPS/action"]
                },
            },
        )
        assert r.status_code == 200, r.text
        assert r.json()["properties"]["vaultCriticalOperationExclusionList"] == [
            f"{DP}/backupInstances/suspendBackups/action"
        ]
        assert "tags" not in r.json()  # a PUT replaces
        for bad, code in (("Microsoft.Nothing/x/delete", "InvalidRequestContent"),
                          (f"{DP}/backupResourceGuardProxies/delete", "UserErrorMandatoryCriticalOperation"),
                          (f"{DP}/write#reduceSoftDeleteSecurity", "UserErrorMandatoryCriticalOperation")):  # fmt: skip
            r = admin.put(
                q(guard),
                json={"location": "westus", "properties": {"vaultCriticalOperationExclusionList": [bad]}},
            )
            assert r.status_code == 400, r.text
            assert r.json()["error"]["code"] == code, r.text
            assert r.json()["error"]["target"] == "properties.vaultCriticalOperationExclusionList[0]", r.text
        r = admin.patch(q(guard), json={"tags": {"new": "tag"}})
        assert r.status_code == 200 and r.json()["tags"] == {"new": "tag"}, r.text
        assert admin.get(q(guard)).json()["tags"] == {"new": "tag"}
        listed = admin.get(q(f"{rg_path(rg, sub)}/providers/Microsoft.DataProtection/resourceGuards")).json()[
            "value"
        ]
        assert [g["name"] for g in listed] == ["g1"]
        listed = admin.get(
            q(f"/subscriptions/{sub}/providers/Microsoft.DataProtection/resourceGuards")
        ).json()["value"]
        assert [g["name"] for g in listed] == ["g1"]
        for collection in ("deleteResourceGuardProxyRequests", "disableSoftDeleteRequests", "getBackupSecurityPINRequests",
                           "deleteProtectedItemRequests", "updateProtectionPolicyRequests", "updateProtectedItemRequests"):  # fmt: skip
            item = {
                "id": f"{guard}/{collection}/default",
                "name": "default",
                "type": f"Microsoft.DataProtection/resourceGuards/{collection}",
            }
            assert admin.get(q(f"{guard}/{collection}")).json() == {"value": [item]}
            assert admin.get(q(f"{guard}/{collection}/DEFAULT")).json() == item
            r = admin.get(q(f"{guard}/{collection}/other"))
            assert r.status_code == 404 and r.json()["error"]["code"] == "ResourceNotFound", r.text
        # the vault owner's tenant does not own the guard's subscription
        r = client.get(q(guard))
        assert r.status_code == 403 and r.json()["error"]["code"] == "AuthorizationFailed", r.text
        r = admin.put(q(guard), json={"location": "not a place!"})
        assert r.status_code == 400 and r.json()["error"]["target"] == "location", r.text
        assert admin.delete(q(guard)).status_code == 200
        assert admin.delete(q(guard)).status_code == 204
        r = admin.get(q(guard))
        assert r.status_code == 404 and r.json()["error"]["code"] == "ResourceNotFound", r.text
    finally:
        admin.delete(f"{rg_path(rg, sub)}?api-version=2021-04-01")


def test_linking_a_vault_needs_the_guard_owner(
    client: httpx.Client, admin: httpx.Client, server: Server
) -> None:
    g = Guarded(client, admin, server)
    g.env.create()
    try:
        assert admin.put(q(g.guard), json={"location": "westus"}).status_code == 201
        body = {"properties": {"resourceGuardResourceId": g.guard}}
        refused(client.put(q(g.proxy), json=body), "Linking a vault")
        r = client.put(
            q(g.proxy), headers=g.aux, json={"properties": {"resourceGuardResourceId": "/not/a/guard"}}
        )
        assert r.status_code == 400 and r.json()["error"]["target"] == "properties.resourceGuardResourceId", (
            r.text
        )
        missing = g.guard.replace("guard1", "nope")
        r = client.put(q(g.proxy), headers=g.aux, json={"properties": {"resourceGuardResourceId": missing}})
        assert r.status_code == 400 and r.json()["error"]["code"] == "UserErrorResourceGuardNotFound", r.text
        r = client.put(q(g.proxy), headers=g.aux, json=body)
        assert r.status_code == 200, r.text
        proxy = r.json()
        assert proxy["type"] == "Microsoft.DataProtection/vaults/backupResourceGuardProxies"
        assert proxy["properties"]["resourceGuardResourceId"] == g.guard
        details = {
            d["vaultCriticalOperation"]: d["defaultResourceRequest"]
            for d in proxy["properties"]["resourceGuardOperationDetails"]
        }
        assert details[f"{DP}/backupInstances/delete"] == f"{g.guard}/deleteBackupInstanceRequests/default"
        assert client.get(q(g.proxy)).json() == proxy
        assert client.get(q(f"{g.env.vault_path}/backupResourceGuardProxies")).json() == {"value": [proxy]}
        assert client.get(q(g.env.vault_path)).json()["properties"]["isVaultProtectedByResourceGuard"] is True
        other = f"{g.env.vault_path}/backupResourceGuardProxies/Another"
        r = client.put(q(other), headers=g.aux, json=body)
        assert r.status_code == 409 and r.json()["error"]["code"] == "UserErrorResourceGuardProxyExists", (
            r.text
        )
    finally:
        g.drop()


def test_critical_operations_need_the_guards_approval(guarded: Guarded) -> None:
    g, c = guarded, guarded.c
    bi = g.instance
    # stop protection and suspend backups: their optional body carries the approval
    for action, kind in (
        ("suspendBackups", "dppDisableSuspendBackupsRequests"),
        ("stopProtection", "dppDisableStopProtectionRequests"),
    ):
        refused(c.post(q(f"{bi}/{action}")), action)
        refused(
            c.post(q(f"{bi}/{action}"), json={"resourceGuardOperationRequests": g.request("wrongRequests")}),
            action,
        )
        refused(
            c.post(q(f"{bi}/{action}"), json={"resourceGuardOperationRequests": g.request(kind)}), "approval"
        )
        r = c.post(
            q(f"{bi}/{action}"), headers=g.aux, json={"resourceGuardOperationRequests": g.request(kind)}
        )
        assert r.status_code == 202, r.text
        assert wait_operation(c, r.headers["Azure-AsyncOperation"])["status"] == "Succeeded"
    # an update of the instance (dppModifyPolicy)
    body = instance_body(g.env.policy_id, tags={"changed": "yes"})
    refused(c.put(q(bi), json=body), "Modifying a backup instance")
    body["properties"]["resourceGuardOperationRequests"] = g.request("dppModifyPolicy")
    r = c.put(q(bi), headers=g.aux, json=body)
    assert r.status_code == 200, r.text
    assert "resourceGuardOperationRequests" not in r.json()["properties"]  # an approval, not stored
    assert wait_operation(c, r.headers["Azure-AsyncOperation"])["status"] == "Succeeded"
    # a restore (the approval is checked before anything else about the request)
    restore = {
        "objectType": "AzureBackupRecoveryPointBasedRestoreRequest", "sourceDataStoreType": "VaultStore",
        "recoveryPointId": "no-such-point",
        "restoreTargetInfo": {"objectType": "RestoreTargetInfo", "recoveryOption": "FailIfExists",
                              "datasourceInfo": body["properties"]["dataSourceInfo"]},
    }  # fmt: skip
    refused(c.post(q(f"{bi}/restore"), json=restore), "A restore")
    restore["resourceGuardOperationRequests"] = g.request("dppTriggerRestoreRequests")
    r = c.post(q(f"{bi}/restore"), headers=g.aux, json=restore)
    assert r.status_code == 400 and r.json()["error"]["code"] == "UserErrorRecoveryPointNotFound", r.text
    # weakening the vault: soft delete (shorter, or off), immutability, encryption
    vault = g.env.vault_path
    for security, kind in (
        ({"softDeleteSettings": {"state": "On", "retentionDurationInDays": 14}}, "dppReduceSoftDeleteSecurityRequests"),
        ({"softDeleteSettings": {"state": "Off"}}, "dppReduceSoftDeleteSecurityRequests"),
        ({"immutabilitySettings": {"state": "Disabled"}}, "dppReduceImmutabilityStateRequests"),
        ({"encryptionSettings": {"state": "Enabled", "keyVaultProperties": {"keyUri": "https://kv.vault.azure.net/keys/k/1"}}},
         "dppModifyEncryptionSettingsRequests"),
    ):  # fmt: skip
        refused(c.patch(q(vault), json={"properties": {"securitySettings": security}}), "security")
        refused(
            c.put(q(vault), json={"location": "westus", "properties": {"securitySettings": security}}),
            "security",
        )
        approved = {
            "properties": {"securitySettings": security, "resourceGuardOperationRequests": g.request(kind)}
        }
        r = c.patch(q(vault), headers=g.aux, json=approved)
        assert r.status_code == 200, r.text
        assert (
            "resourceGuardOperationRequests" not in r.json()["properties"]
            or r.json()["properties"]["resourceGuardOperationRequests"] == []
        )
    # strengthening needs no approval
    r = c.patch(
        q(vault),
        json={
            "properties": {
                "securitySettings": {"softDeleteSettings": {"state": "On", "retentionDurationInDays": 60}}
            }
        },
    )
    assert r.status_code == 200, r.text
    # deleting the instance: unlockDelete first, approved by the guard's owner
    refused(c.delete(q(bi)), "unlockDelete")
    refused(g.unlock(bi, "deleteBackupInstanceRequests", headers={}), "approval")
    refused(g.unlock(bi, "deleteResourceGuardProxyRequests"), "deleteBackupInstanceRequests")
    r = g.unlock(bi.replace("bi1", "nope"), "deleteBackupInstanceRequests")
    assert r.status_code == 400 and r.json()["error"]["target"] == "resourceToBeDeleted", r.text
    r = g.unlock("/subscriptions/x/elsewhere", "deleteBackupInstanceRequests")
    assert r.status_code == 400 and r.json()["error"]["target"] == "resourceToBeDeleted", r.text
    r = g.unlock(bi, "deleteBackupInstanceRequests")
    assert r.status_code == 200 and r.json()["unlockDeleteExpiryTime"], r.text
    r = c.delete(q(bi))
    assert r.status_code == 202, r.text
    assert wait_operation(c, r.headers["Azure-AsyncOperation"])["status"] == "Succeeded"
    # removing the guard: critical and mandatory
    refused(c.delete(q(g.proxy)), "unlockDelete")
    r = g.unlock(g.proxy, "deleteResourceGuardProxyRequests")
    assert r.status_code == 200, r.text
    assert c.delete(q(g.proxy)).status_code == 200
    assert c.delete(q(g.proxy)).status_code == 204
    assert c.get(q(vault)).json()["properties"]["isVaultProtectedByResourceGuard"] is False
    r = c.patch(q(vault), json={"properties": {"securitySettings": {"softDeleteSettings": {"state": "Off"}}}})
    assert r.status_code == 200, r.text  # no guard, no approval needed


def test_auxiliary_tokens(guarded: Guarded, server: Server) -> None:
    """An invalid auxiliary token is a 401 like an invalid Authorization; a valid one of a tenant
    that does not own the guard's subscription is refused; several tokens may be sent."""
    g, c = guarded, guarded.c
    body = {"resourceGuardOperationRequests": g.request("dppDisableSuspendBackupsRequests")}
    action = f"{g.instance}/suspendBackups"
    r = c.post(q(action), headers={"x-ms-authorization-auxiliary": "Bearer not-a-jwt"}, json=body)
    assert r.status_code == 401 and r.json()["error"]["code"] == "InvalidAuthenticationToken", r.text
    wrong = server.token("--tenant", OTHER_TENANT)
    refused(
        c.post(q(action), headers={"x-ms-authorization-auxiliary": f"Bearer {wrong}"}, json=body), "approval"
    )
    both = f"Bearer {wrong}, {g.aux['x-ms-authorization-auxiliary']}"
    r = c.post(q(action), headers={"x-ms-authorization-auxiliary": both}, json=body)
    assert r.status_code == 202, r.text


def test_excluded_operations_need_no_approval(
    client: httpx.Client, admin: httpx.Client, server: Server
) -> None:
    g = Guarded(client, admin, server).create(exclusions=[f"{DP}/backupInstances/suspendBackups/action"])
    try:
        r = client.post(q(f"{g.instance}/suspendBackups"))
        assert r.status_code == 202, r.text
        refused(client.post(q(f"{g.instance}/stopProtection")), "stopProtection")
    finally:
        g.drop()


def test_a_guard_of_the_callers_own_tenant(client: httpx.Client, server: Server) -> None:
    """The caller's own token approves when its tenant owns the guard's subscription (no auxiliary)."""
    g = Guarded(client, client, server)
    g.guard = g.guard.replace(g.guard_sub, SUB)
    g.guard_sub = SUB
    g.aux = {}
    g.create()
    try:
        refused(client.post(q(f"{g.instance}/stopProtection")), "stopProtection")
        r = client.post(
            q(f"{g.instance}/stopProtection"),
            json={"resourceGuardOperationRequests": g.request("dppDisableStopProtectionRequests")},
        )
        assert r.status_code == 202, r.text
    finally:
        g.drop()

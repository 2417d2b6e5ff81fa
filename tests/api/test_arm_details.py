"""ARM details clients found (issue 13 items 5 and 6): repeated slashes, the metadata's
loginEndpoint, the operation-status ``error`` in ARM's Error shape, ``clients add --subscription``,
the accepted api-versions and what each one shows.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from typing import Any

import httpx
import pytest

from dpvault.settings import DEFAULT_API_VERSIONS
from tests.support import SUB, Env, Server, instance_body, policy_body, rg_path, vault_path, wait_operation

ERROR_KEYS = {"code", "message", "target", "details", "additionalInfo"}
MISSING_SECRET = "https://nowhere-kv.vault.azure.net/secrets/not-stored"


def q(path: str, api: str) -> str:
    return f"{path}?api-version={api}"


# -- item 6 -------------------------------------------------------------------------------------


def test_repeated_slashes_are_collapsed_before_routing(server: Server, client: httpx.Client) -> None:
    """What ``az cloud register`` with endpoint discovery sends: the base URL's slash plus the path's."""
    with httpx.Client(verify=server.ssl_context(), timeout=30) as anonymous:
        r = anonymous.get(f"{server.base}//metadata/endpoints?api-version=2022-09-01")
        assert r.status_code == 200, r.text
        assert r.json()["authentication"]["loginEndpoint"] == server.base  # no trailing slash
        r = anonymous.get(f"{server.base}//adfs/.well-known/openid-configuration")
        assert r.status_code == 200 and r.json()["issuer"], r.text
        r = anonymous.get(f"{server.base}/adfs//v2.0//.well-known/openid-configuration")
        assert r.status_code == 200, r.text
    r = client.get(
        f"{server.base}//subscriptions/{SUB}//providers/Microsoft.DataProtection/backupVaults?api-version=2023-01-01"
    )
    assert r.status_code == 200 and isinstance(r.json()["value"], list), r.text
    r = client.get(f"{server.base}//nothing//here?api-version=2023-01-01")
    assert r.status_code == 404 and r.json()["error"]["code"] == "NotFound", r.text


def arm_error(body: dict[str, Any]) -> dict[str, Any]:
    """The operation's error: ARM's Error object and nothing else; the UserFacingError in additionalInfo."""
    error = body["error"]
    assert set(error) <= ERROR_KEYS and {"code", "message", "details", "additionalInfo"} <= set(error), error
    assert error["details"] == [], error
    (info,) = error["additionalInfo"]
    assert info["type"] == "UserFacingError" and set(info) == {"type", "info"}, info
    assert info["info"]["code"] == error["code"] and info["info"]["recommendedAction"], info
    assert info["info"]["isUserError"] is True and info["info"]["isRetryable"] is False, info
    return error


@pytest.mark.parametrize("api", ["2023-01-01", "2026-06-01"])
def test_failed_operation_status_error_is_an_arm_error(client: httpx.Client, env: Env, api: str) -> None:
    """A deep validation that fails (no secret holds the URI): the status body's ``error`` is ARM's
    Error shape; the result URL answers the same CloudError; the UserFacingError stays in the job."""
    request = {"backupInstance": instance_body(env.policy_id, secret_uri=MISSING_SECRET)["properties"]}
    r = client.post(q(f"{env.vault_path}/validateForBackup", api), json=request)
    assert r.status_code == 202, r.text
    status = wait_operation(client, r.headers["Azure-AsyncOperation"])
    assert status["status"] == "Failed" and set(status) == {
        "id",
        "name",
        "status",
        "startTime",
        "endTime",
        "error",
    }
    error = arm_error(status)
    assert error["code"] == "UserErrorSecretNotFound"
    result = client.get(r.headers["Location"])
    assert result.status_code == 400, result.text
    assert arm_error(result.json()) == error
    jobs = client.get(q(f"{env.vault_path}/backupJobs", api)).json()["value"]
    (job,) = [j for j in jobs if j["properties"]["operation"] == "ValidateForBackup"]
    (detail,) = job["properties"]["errorDetails"]
    assert (
        detail["code"] == "UserErrorSecretNotFound"
        and detail["recommendedAction"]
        and detail["isUserError"] is True
    )
    # the instance PUT's failure too: the instance keeps its protectionErrorDetails (a UserFacingError)
    body = instance_body(env.policy_id, secret_uri=MISSING_SECRET, validation="DeepValidation")
    r = env.put_instance("bi-fails", body, api=api)
    assert r.status_code == 201, r.text
    assert (
        arm_error(wait_operation(client, r.headers["Azure-AsyncOperation"]))["code"]
        == "UserErrorSecretNotFound"
    )
    details = client.get(q(env.instance_path("bi-fails"), api)).json()["properties"]["protectionErrorDetails"]
    assert details["code"] == "UserErrorSecretNotFound" and details["recommendedAction"]


def dpvault_cli(server: Server, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "dpvault", *args, "--data-dir", str(server.data_dir)]
    if server.database_url:
        cmd += ["--database-url", server.database_url]
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=60)


def test_clients_add_registers_the_subscription_for_the_clients_tenant(server: Server) -> None:
    """``az login`` with a service principal lists ``GET /subscriptions``: the client's subscription
    is there without ``dpvault subscriptions add``."""
    tenant, sub = str(uuid.uuid4()), str(uuid.uuid4())
    out = dpvault_cli(server, "clients", "add", "ci", "--tenant", tenant, "--subscription", sub).stdout
    fields = dict(line.split("=", 1) for line in out.splitlines())
    assert fields["tenant_id"] == tenant and fields["subscription_id"] == sub
    with httpx.Client(base_url=server.base, verify=server.ssl_context(), timeout=30) as anonymous:
        token = anonymous.post(f"/{tenant}/oauth2/v2.0/token", data={
            "grant_type": "client_credentials", "client_id": fields["client_id"],
            "client_secret": fields["client_secret"], "scope": "https://management.azure.com/.default",
        }).json()["access_token"]  # fmt: skip
    with server.client(token) as c:
        listed = c.get("/subscriptions?api-version=2022-12-01").json()["value"]
        assert [s["subscriptionId"] for s in listed] == [sub] and listed[0]["tenantId"] == tenant
        assert c.get(f"/subscriptions/{sub}/resourceGroups?api-version=2021-04-01").status_code == 200
    # a subscription another tenant owns: refused, and no client is made
    other = dpvault_cli(
        server, "clients", "add", "x", "--tenant", str(uuid.uuid4()), "--subscription", sub, check=False
    )
    assert other.returncode == 1 and f"subscription {sub} already belongs to tenant {tenant}" in other.stderr
    assert (
        "ci" in dpvault_cli(server, "clients", "list").stdout
        and "  x" not in dpvault_cli(server, "clients", "list").stdout
    )
    bad = dpvault_cli(server, "clients", "add", "y", "--subscription", "not-a-guid", check=False)
    assert bad.returncode == 2 and "--subscription" in bad.stderr


# -- item 5 -------------------------------------------------------------------------------------


@pytest.mark.parametrize("api", DEFAULT_API_VERSIONS)
def test_every_version_up_to_2026_08_31_preview_is_accepted(client: httpx.Client, api: str) -> None:
    r = client.get(q(f"/subscriptions/{SUB}/providers/Microsoft.DataProtection/backupVaults", api))
    assert r.status_code == 200, r.text


def test_versions_outside_the_list_are_refused(client: httpx.Client) -> None:
    assert {"2026-04-01-preview", "2026-08-31-preview", "2023-05-01", "2024-04-01"} <= set(
        DEFAULT_API_VERSIONS
    )
    for api in ("2022-12-01", "2026-09-01", "2021-06-01-preview"):
        r = client.get(q(f"/subscriptions/{SUB}/providers/Microsoft.DataProtection/backupVaults", api))
        assert r.status_code == 400 and r.json()["error"]["code"] == "NoRegisteredProviderFound", r.text
        assert "2026-08-31-preview" in r.json()["error"]["message"]


# What a 2023-01-01 vault body holds (the stored shape, unchanged by issue 13).
VAULT_2023 = {"storageSettings", "securitySettings", "featureSettings", "monitoringSettings", "provisioningState",
              "resourceMoveState", "isVaultProtectedByResourceGuard"}  # fmt: skip


def test_each_version_shows_its_own_fields(client: httpx.Client) -> None:
    """A vault and an instance created at 2026-06-01 with properties of later versions: 2023-01-01
    answers without them (and without the read-only fields later versions added); each later
    version adds what it introduced."""
    rg = f"rg-ver-{uuid.uuid4().hex[:6]}"
    path = vault_path(rg, "versions")
    uami = f"{rg_path(rg)}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/uami1"
    body = {
        "location": "westus",
        "identity": {"type": "SystemAssigned,UserAssigned", "userAssignedIdentities": {uami: {}}},
        "properties": {
            "storageSettings": [{"datastoreType": "VaultStore", "type": "GeoRedundant"}],
            "securitySettings": {
                "softDeleteSettings": {"state": "On", "retentionDurationInDays": 14},
                "immutabilitySettings": {"state": "Disabled"},
                "encryptionSettings": {"state": "Enabled", "keyVaultProperties": {"keyUri": "https://kv.vault.azure.net/keys/k/1"},
                                       "kekIdentity": {"identityType": "UserAssigned", "identityId": uami},
                                       "infrastructureEncryption": "Enabled"},
            },
            "featureSettings": {"crossSubscriptionRestoreSettings": {"state": "Enabled"}, "crossRegionRestoreSettings": {"state": "Enabled"}},
            "monitoringSettings": {"azureMonitorAlertSettings": {"alertsForAllJobFailures": "Enabled"}},
            "costManagementSettings": {"granularityLevel": "ProtectedItemLevel"},
            "replicatedRegions": [],
        },
    }  # fmt: skip
    try:
        r = client.put(q(path, "2026-06-01"), json=body)
        assert r.status_code == 201, r.text
        wait_operation(client, r.headers["Azure-AsyncOperation"])
        seen = {
            api: client.get(q(path, api)).json()
            for api in ("2023-01-01", "2023-05-01", "2023-11-01", "2024-03-01", "2026-06-01")
        }
        old = seen["2023-01-01"]
        assert set(old["properties"]) == VAULT_2023, old
        assert set(old["properties"]["securitySettings"]) == {"softDeleteSettings", "immutabilitySettings"}
        assert set(old["properties"]["featureSettings"]) == {"crossSubscriptionRestoreSettings"}
        assert "userAssignedIdentities" not in old["identity"]
        assert set(seen["2023-05-01"]["properties"]) == VAULT_2023 | {"secureScore"}
        assert seen["2023-05-01"]["properties"]["featureSettings"]["crossRegionRestoreSettings"] == {
            "state": "Enabled"
        }
        assert set(seen["2023-05-01"]["identity"]["userAssignedIdentities"][uami]) == {
            "principalId",
            "clientId",
        }
        assert seen["2023-11-01"]["properties"]["replicatedRegions"] == []
        newer = seen["2024-03-01"]["properties"]
        assert newer["bcdrSecurityLevel"] == "Fair" and newer["secureScore"] == "Minimum"
        assert (
            newer["securitySettings"]["encryptionSettings"]["state"] == "Enabled"
            and "costManagementSettings" not in newer
        )
        newest = seen["2026-06-01"]["properties"]
        assert newest["costManagementSettings"] == {"granularityLevel": "ProtectedItemLevel"}
        assert newest["resourceGuardOperationRequests"] == []
        assert seen["2026-06-01"]["identity"]["type"] == "SystemAssigned,UserAssigned"
        # lists answer in the version too
        listed = client.get(
            q(f"{rg_path(rg)}/providers/Microsoft.DataProtection/backupVaults", "2023-01-01")
        ).json()["value"]
        assert listed == [old]
        # an instance with identityDetails (2023-05-01+)
        policy = f"{path}/backupPolicies/p"
        assert client.put(q(policy, "2023-01-01"), json=policy_body()).status_code == 200
        bi = instance_body(policy)
        bi["properties"]["identityDetails"] = {
            "useSystemAssignedIdentity": False,
            "userAssignedIdentityArmUrl": uami,
        }
        r = client.put(q(f"{path}/backupInstances/bi", "2026-06-01"), json=bi)
        assert (
            r.status_code == 201
            and r.json()["properties"]["identityDetails"]["userAssignedIdentityArmUrl"] == uami
        ), r.text
        wait_operation(client, r.headers["Azure-AsyncOperation"])
        assert (
            "identityDetails"
            not in client.get(q(f"{path}/backupInstances/bi", "2023-01-01")).json()["properties"]
        )
        assert (
            "identityDetails"
            in client.get(q(f"{path}/backupInstances/bi", "2023-05-01")).json()["properties"]
        )
        listed = client.get(q(f"{path}/backupInstances", "2023-01-01")).json()["value"]
        assert "identityDetails" not in listed[0]["properties"]
    finally:
        client.delete(f"{rg_path(rg)}?api-version=2021-04-01")


def test_lifecycle_results_by_version(client: httpx.Client, env: Env) -> None:
    """2023-01-01 as before (``{}``); later versions the OperationJobExtendedInfo the service answers."""
    env.create_instance("bi-life")
    for api, action, expected in (
        ("2023-01-01", "suspendBackups", {}),
        ("2026-06-01", "resumeBackups", {"objectType": "OperationJobExtendedInfo"}),
    ):
        r = client.post(q(f"{env.instance_path('bi-life')}/{action}", api))
        assert r.status_code == 202, r.text
        status = wait_operation(client, r.headers["Azure-AsyncOperation"])
        assert status["status"] == "Succeeded"
        assert ("properties" in status) == bool(expected), status
        assert client.get(r.headers["Location"]).json() == expected


def test_operation_results_at_the_examples_locations(client: httpx.Client, env: Env) -> None:
    """The examples' Location forms (not in the spec): RG/DP/operationResults/{id} and
    RG/DP/backupInstances/{bi}/operationResults/{id}."""
    r = env.put_instance("bi-loc")
    op = r.headers["Azure-AsyncOperation"].split("/operationStatus/")[1].split("?")[0]
    wait_operation(client, r.headers["Azure-AsyncOperation"])
    base = f"{rg_path(env.rg)}/providers/Microsoft.DataProtection"
    for path in (f"{base}/operationResults/{op}", f"{base}/backupInstances/bi-loc/operationResults/{op}"):
        r = client.get(q(path, "2023-01-01"))
        assert r.status_code == 200 and r.json()["name"] == "bi-loc", r.text
    r = client.get(q(f"{base}/backupInstances/other/operationResults/{op}", "2023-01-01"))
    assert r.status_code == 404 and r.json()["error"]["code"] == "OperationNotFound", r.text

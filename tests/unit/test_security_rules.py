"""Pure rules of issue 13: stored operation errors in ARM's shape, soft-delete settings, the
resource guard's approvals, and what each api-version shows."""

from __future__ import annotations

import msgspec
import pytest

from dpvault import errors
from dpvault.model import versions
from dpvault.model.guards import rules as guards
from dpvault.model.operations import arm_error, stored_error
from dpvault.model.vaults import rules
from dpvault.model.vaults.schema import BackupVault, SecuritySettings, SoftDeleteSettings, StorageSetting
from dpvault.store import OperationRow

GUARD = "/subscriptions/5e13b949-1218-4d18-8b99-7e12155ec4f7/resourceGroups/sec/providers/Microsoft.DataProtection/resourceGuards/g"


def op_with(error: dict[str, object]) -> OperationRow:
    return OperationRow(
        id="op", kind="validate", status="Failed", subscription="s", rg_key="r", vault_key="v", resource_key="k",
        resource_path="p", location="westus", api_version="2023-01-01", request_hash="h", start_time=0.0,
        end_time=1.0, error=msgspec.json.encode(error), result=None,
    )  # fmt: skip


def test_records_of_earlier_versions_move_the_user_facing_error_to_additional_info() -> None:
    facing = {
        "code": "UserErrorSecretNotFound",
        "message": "m",
        "recommendedAction": ["a"],
        "isRetryable": False,
        "isUserError": True,
    }
    old = op_with({"code": "UserErrorSecretNotFound", "message": "m", "details": [facing], "httpStatus": 400})
    error = stored_error(old)
    assert error is not None and error.status == 400
    assert arm_error(error) == {
        "code": "UserErrorSecretNotFound", "message": "m", "details": [],
        "additionalInfo": [{"type": "UserFacingError", "info": facing}],
    }  # fmt: skip
    plain = stored_error(
        op_with({"code": "C", "message": "m", "target": "t", "details": [{"code": "D", "message": "d"}]})
    )
    assert plain is not None
    assert arm_error(plain) == {
        "code": "C",
        "message": "m",
        "target": "t",
        "details": [{"code": "D", "message": "d"}],
        "additionalInfo": [],
    }
    new = errors.UserError("UserErrorX", "m", "do this").to_arm()
    assert new.details is None and new.additional_info == [
        {"type": "UserFacingError", "info": errors.UserError("UserErrorX", "m", "do this").user_facing()}
    ]


def vault(state: str | None = None, days: float | None = None) -> BackupVault:
    soft = SoftDeleteSettings(state=state, retentionDurationInDays=days) if state else None  # type: ignore[arg-type]
    return BackupVault(
        storageSettings=[StorageSetting(datastoreType="VaultStore", type="LocallyRedundant")],
        securitySettings=SecuritySettings(softDeleteSettings=soft) if soft else None,
    )


def test_soft_delete_settings() -> None:
    props, critical = rules.security_change(None, vault("Enabled"))
    assert props.securitySettings.softDeleteSettings == SoftDeleteSettings(
        state="On", retentionDurationInDays=14.0
    )
    assert critical == [] and rules.soft_delete_days(props) == 14.0
    assert rules.soft_delete_days(vault("Off", 30)) is None and rules.soft_delete_days(vault()) is None
    kept, _ = rules.security_change(vault("AlwaysOn", 60), vault())
    assert kept.securitySettings.softDeleteSettings.state == "AlwaysOn"  # left out: kept
    for before, after in ((vault("On", 30), vault("Off")), (vault("On", 30), vault("On", 20))):
        assert rules.security_change(before, after)[1] == [rules.REDUCE_SOFT_DELETE]
    assert rules.security_change(vault("On", 30), vault("AlwaysOn", 90))[1] == []
    with pytest.raises(errors.ArmError) as raised:
        rules.security_change(vault("AlwaysOn", 14), vault("On"))
    assert raised.value.code == "UserErrorSoftDeleteAlwaysOnCannotBeDisabled"
    for days in (13.9, 180.5):
        with pytest.raises(errors.ArmError) as raised:
            rules.security_change(None, vault("On", days))
        assert raised.value.target == "properties.securitySettings.softDeleteSettings.retentionDurationInDays"


def test_guard_requests_and_exclusions() -> None:
    assert guards.names_request(
        [f"{GUARD}/deleteBackupInstanceRequests/default"], GUARD, guards.DELETE_INSTANCE
    )
    assert guards.names_request(
        [f"{GUARD.upper()}/DELETEBACKUPINSTANCEREQUESTS/x"], GUARD, guards.DELETE_INSTANCE
    )
    assert not guards.names_request([f"{GUARD}/deleteBackupInstanceRequests/"], GUARD, guards.DELETE_INSTANCE)
    assert not guards.names_request(
        [f"{GUARD}2/deleteBackupInstanceRequests/default"], GUARD, guards.DELETE_INSTANCE
    )
    assert not guards.names_request(None, GUARD, guards.STOP_PROTECTION)
    assert guards.guard_subscription(GUARD) == "5e13b949-1218-4d18-8b99-7e12155ec4f7"
    assert (
        guards.guard_subscription(GUARD + "/x") is None
        and guards.guard_subscription("/subscriptions/s") is None
    )
    props = guards.guard_properties([guards.STOP_PROTECTION.upper(), guards.STOP_PROTECTION])
    assert props.vaultCriticalOperationExclusionList == [guards.STOP_PROTECTION]
    details = guards.operation_details(GUARD, props)
    assert guards.STOP_PROTECTION not in {d.vaultCriticalOperation for d in details}
    assert len(details) == len(guards.REQUEST_TYPES) - 1


def test_versions() -> None:
    body = msgspec.json.encode(
        {
            "properties": {
                "securitySettings": {
                    "softDeleteSettings": {"state": "AlwaysOn"},
                    "immutabilitySettings": {"state": "Locked"},
                }
            }
        }
    )
    assert versions.vault_body(body, "2023-01-01") is body  # nothing newer stored: the same bytes
    view = msgspec.json.decode(versions.vault_body(body, "2024-04-01"))["properties"]
    assert (view["secureScore"], view["bcdrSecurityLevel"], view["replicatedRegions"]) == (
        "Maximum",
        "Excellent",
        [],
    )
    point = {"properties": {}}
    assert versions.recovery_point_view(point, "2023-05-01") == {"properties": {}}
    assert (
        versions.recovery_point_view(point, "2023-11-01")["properties"]["recoveryPointState"] == "Completed"
    )
    params = {"backupDatasourceParametersList": [{"objectType": "GenericBackupDatasourceParameters", "resourceSelectors": []},
                                                 {"objectType": "KubernetesClusterBackupDatasourceParameters", "includedVolumeTypes": ["AzureDisk"]}]}  # fmt: skip
    instance = msgspec.json.encode({"properties": {"policyInfo": {"policyParameters": params}}})
    seen = msgspec.json.decode(versions.instance_body(instance, "2025-02-01"))
    assert seen["properties"]["policyInfo"]["policyParameters"]["backupDatasourceParametersList"] == [
        {"objectType": "KubernetesClusterBackupDatasourceParameters"}
    ]
    assert versions.instance_body(instance, "2026-06-01") == instance
    assert versions.since("2026-04-01-preview", "2026-03-01") and not versions.since(
        "2023-04-01-preview", "2023-05-01"
    )

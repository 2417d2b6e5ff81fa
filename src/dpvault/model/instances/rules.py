"""Decisions about backup instances that need no I/O: the shape a request must have, the policy it
names, and the body the service stores and returns."""

from __future__ import annotations

import msgspec

from dpvault import errors
from dpvault.arm import ids
from dpvault.model.instances.schema import (
    BackupInstance,
    BackupInstanceResource,
    DeletionInfo,
    ProtectionStatusDetails,
    SecretStoreBasedAuthCredentials,
    UserFacingError,
)
from dpvault.model.keys import policy_key
from dpvault.model.policies.schema import BaseBackupPolicyResource
from dpvault.store import ResourceRow
from dpvault.types import DELETED_INSTANCE_TYPE, ProtectionState

_decoder = msgspec.json.Decoder(BackupInstanceResource)


def decode_instance(body: bytes) -> BackupInstanceResource:
    return _decoder.decode(body)


def check_shape(bi: BackupInstance, base: str = "properties") -> None:
    """Rules the schema cannot say: the plain-string objectType, non-empty ids, a datasource type."""
    if bi.objectType.lower() not in ("backupinstance", ""):  # Terraform's azurerm always sends ""
        raise errors.bad_request(
            f"The value '{ids.printable(bi.objectType)}' of '{base}.objectType' is not valid; expected 'BackupInstance'.",
            target=f"{base}.objectType",
        )
    if not bi.dataSourceInfo.resourceID.strip():
        raise errors.bad_request(
            f"The property '{base}.dataSourceInfo.resourceID' must not be empty.",
            target=f"{base}.dataSourceInfo.resourceID",
        )
    if not (bi.dataSourceInfo.datasourceType or "").strip():
        raise errors.bad_request(
            f"The property '{base}.dataSourceInfo.datasourceType' is required (e.g. "
            "'Microsoft.DBforPostgreSQL/servers/databases').",
            target=f"{base}.dataSourceInfo.datasourceType",
        )
    if not bi.policyInfo.policyId.strip():
        raise errors.bad_request(
            f"The property '{base}.policyInfo.policyId' must not be empty.",
            target=f"{base}.policyInfo.policyId",
        )
    creds = bi.datasourceAuthCredentials
    if isinstance(creds, SecretStoreBasedAuthCredentials) and creds.secretStoreResource is not None:
        store = creds.secretStoreResource
        if store.secretStoreType == "AzureKeyVault" and not (store.uri or "").strip():
            raise errors.bad_request(
                "An AzureKeyVault secret store needs 'uri', the URI of the secret.",
                target=f"{base}.datasourceAuthCredentials.secretStoreResource.uri",
            )


def policy_key_of(bi: BackupInstance, base: str = "properties") -> tuple[str, str]:
    """(key, name) of the policy ``policyInfo.policyId`` names; a 400 if it is not a policy id."""
    parsed = ids.parse_policy_id(bi.policyInfo.policyId.strip())
    if parsed is None:
        raise errors.bad_request(
            f"'{ids.printable(bi.policyInfo.policyId)}' is not a backup policy id of the form "
            "/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.DataProtection/backupVaults/{vault}/backupPolicies/{name}.",
            code="InvalidPolicyId",
            target=f"{base}.policyInfo.policyId",
        )
    sub, rg, vault, name = parsed
    return policy_key(sub, rg, vault, name), name


def without_secret(bi: BackupInstance) -> BackupInstance:
    """The instance with any inline secret ``value`` replaced by null: secrets are never stored."""
    creds = bi.datasourceAuthCredentials
    if creds is None or creds.secretStoreResource is None:
        return bi
    store = msgspec.structs.replace(creds.secretStoreResource, value=None)
    return msgspec.structs.replace(
        bi, datasourceAuthCredentials=msgspec.structs.replace(creds, secretStoreResource=store)
    )


def stored_properties(
    bi: BackupInstance,
    *,
    policy_row: ResourceRow,
    policy: BaseBackupPolicyResource,
    provisioning: str,
    protection: ProtectionState,
) -> BackupInstance:
    """What the service keeps and returns: policy id canonical, policyVersion filled, secrets dropped."""
    bi = without_secret(bi)
    policy_info = msgspec.structs.replace(
        bi.policyInfo, policyId=policy.id or bi.policyInfo.policyId, policyVersion=f"{policy_row.revision}.0"
    )
    return msgspec.structs.replace(
        bi,
        objectType="BackupInstance",
        policyInfo=policy_info,
        validationType=None,
        provisioningState=provisioning,
        protectionStatus=ProtectionStatusDetails(status=_status_for(protection)),
        currentProtectionState=protection.value,
        protectionErrorDetails=None,
        resourceGuardOperationRequests=None,  # an approval, not a property: never stored
    )


def _status_for(state: ProtectionState) -> str:
    # protectionStatus.status has no UpdatingProtection; Terraform waits on ConfiguringProtection.
    return ProtectionState.CONFIGURING.value if state is ProtectionState.UPDATING else state.value


def with_state(
    resource: BackupInstanceResource,
    *,
    provisioning: str,
    protection: ProtectionState | None = None,
    error: UserFacingError | None = None,
) -> BackupInstanceResource:
    props = msgspec.structs.replace(resource.properties, provisioningState=provisioning)
    if protection is not None:
        props = msgspec.structs.replace(
            props,
            protectionStatus=ProtectionStatusDetails(status=_status_for(protection), errorDetails=error),
            currentProtectionState=protection.value,
            protectionErrorDetails=error,
        )
    return msgspec.structs.replace(resource, properties=props)


def with_error(resource: BackupInstanceResource, error: UserFacingError | None) -> BackupInstanceResource:
    """The instance showing ``error`` (or no error), its protection state unchanged."""
    props = resource.properties
    status = props.protectionStatus
    if status is not None:
        status = msgspec.structs.replace(status, errorDetails=error)
    props = msgspec.structs.replace(props, protectionErrorDetails=error, protectionStatus=status)
    return msgspec.structs.replace(resource, properties=props)


def subscription_of(resource: BackupInstanceResource, fallback: str) -> str:
    """The subscription as the instance's id spells it (jobs show it so)."""
    return resource.id.split("/")[2] if resource.id else fallback


def vault_name_of(instance_id: str) -> str:
    """The vault name, as last spelled, from an instance id .../backupVaults/{vault}/backupInstances/{name}."""
    parts = instance_id.split("/")
    return parts[-3] if len(parts) >= 3 else ""


# -- soft delete (issue 13) -----------------------------------------------------------------------


def deleted_instance_key(vault_key: str, name: str) -> str:
    """The key of a soft-deleted instance's record (its points move there too)."""
    return f"{vault_key}/deletedbackupinstances/{name.lower()}"


def soft_deleted(
    resource: BackupInstanceResource, deleted_id: str, info: DeletionInfo
) -> BackupInstanceResource:
    """The DeletedBackupInstanceResource of an instance: a proxy resource (no tags) whose properties
    are the instance's, SoftDeleted, with its deletionInfo."""
    props = msgspec.structs.replace(
        resource.properties,
        objectType="DeletedBackupInstance",
        provisioningState="Succeeded",
        protectionStatus=ProtectionStatusDetails(status=ProtectionState.SOFT_DELETED.value),
        currentProtectionState=ProtectionState.SOFT_DELETED.value,
        protectionErrorDetails=None,
        deletionInfo=info,
    )
    return BackupInstanceResource(
        id=deleted_id,
        name=resource.name,
        type=DELETED_INSTANCE_TYPE,
        systemData=resource.systemData,
        properties=props,
    )


def undeleted(resource: BackupInstanceResource) -> BackupInstanceResource:
    """An instance back from soft delete: ProtectionStopped (no backups until resumeProtection)."""
    props = msgspec.structs.replace(
        resource.properties,
        objectType="BackupInstance",
        provisioningState="Succeeded",
        protectionStatus=ProtectionStatusDetails(status=ProtectionState.STOPPED.value),
        currentProtectionState=ProtectionState.STOPPED.value,
        protectionErrorDetails=None,
        deletionInfo=None,
    )
    return msgspec.structs.replace(resource, properties=props)

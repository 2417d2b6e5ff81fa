"""Decisions about backup instances: what a valid request refers to, and the stored body."""

from __future__ import annotations

import msgspec

from dpvault import errors
from dpvault.arm import ids
from dpvault.resources.instances.schema import (
    BackupInstance,
    BackupInstanceResource,
    ProtectionStatusDetails,
    SecretStoreBasedAuthCredentials,
    UserFacingError,
)
from dpvault.resources.policies.handlers import decode_policy, policy_key
from dpvault.resources.policies.schema import BaseBackupPolicyResource
from dpvault.store import ResourceRow, Tx
from dpvault.types import ProtectionState, canonical_datasource_type

_decoder = msgspec.json.Decoder(BackupInstanceResource)


def decode_instance(body: bytes) -> BackupInstanceResource:
    return _decoder.decode(body)


def instance_key(vault_key: str, name: str) -> str:
    return f"{vault_key}/backupinstances/{name.lower()}"


def instance_not_found(name: str, vault: str, rg: str) -> errors.ArmError:
    return errors.resource_not_found(
        f"Microsoft.DataProtection/backupVaults/{vault}/backupInstances/{name}", rg
    )


async def require_instance(tx: Tx, vault_row: ResourceRow, name: str, *, vault: str, rg: str) -> ResourceRow:
    """The instance ``name`` of the vault, or 404 naming it as the caller spelled ``vault``."""
    row = await tx.resource(instance_key(vault_row.key, name))
    if row is None:
        raise instance_not_found(name, vault, rg)
    return row


def check_shape(bi: BackupInstance, base: str = "properties") -> None:
    """Rules the schema cannot say: the plain-string objectType, non-empty ids, a datasource type."""
    if bi.objectType.lower() != "backupinstance":
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


async def resolve_policy(
    tx: Tx,
    bi: BackupInstance,
    vault_row: ResourceRow,
    base: str = "properties",
    prefetched: dict[str, ResourceRow] | None = None,
) -> tuple[ResourceRow, BaseBackupPolicyResource]:
    """The policy named by ``policyInfo.policyId``: in this vault, and covering the datasource type.
    ``prefetched``: rows already read in this transaction, by key (saves a statement)."""
    target = f"{base}.policyInfo.policyId"
    key, name = policy_key_of(bi, base)
    if not key.startswith(vault_row.key + "/"):
        raise errors.bad_request(
            f"The backup policy '{name}' belongs to another vault; a backup instance must use a policy of its own vault.",
            code="BackupPolicyNotInVault",
            target=target,
        )
    row = prefetched.get(key) if prefetched is not None else await tx.resource(key)
    if row is None:
        raise errors.bad_request(
            f"The backup policy '{name}' was not found in backup vault '{vault_row.name}'.",
            code="BackupPolicyNotFound",
            target=target,
        )
    policy = decode_policy(row.body)
    wanted = canonical_datasource_type(bi.dataSourceInfo.datasourceType or "")
    offered = {canonical_datasource_type(t) for t in policy.properties.datasourceTypes}
    if wanted not in offered:
        raise errors.bad_request(
            f"The backup policy '{row.name}' covers datasource types {policy.properties.datasourceTypes}, "
            f"not '{bi.dataSourceInfo.datasourceType}'.",
            code="DatasourceTypeNotSupportedByPolicy",
            target=f"{base}.dataSourceInfo.datasourceType",
        )
    return row, policy


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

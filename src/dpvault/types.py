"""The shared vocabulary: constants and enums used across dpvault. Imports nothing from dpvault."""

from __future__ import annotations

from enum import StrEnum

PROVIDER = "Microsoft.DataProtection"

# Canonical resource types, as ARM spells them in `type`.
VAULT_TYPE = "Microsoft.DataProtection/backupVaults"
POLICY_TYPE = "Microsoft.DataProtection/backupVaults/backupPolicies"
INSTANCE_TYPE = "Microsoft.DataProtection/backupVaults/backupInstances"
RESOURCE_GROUP_TYPE = "Microsoft.Resources/resourceGroups"
DELETED_INSTANCE_TYPE = "Microsoft.DataProtection/backupVaults/deletedBackupInstances"
# The examples' type (the path segment is deletedVaults; a real deleted vault's name is a GUID).
DELETED_VAULT_TYPE = "Microsoft.DataProtection/deletedBackupVaults"
RESOURCE_GUARD_TYPE = "Microsoft.DataProtection/resourceGuards"
# sic: "vaults", as every example and the real service spell it, though the path is under backupVaults
GUARD_PROXY_TYPE = "Microsoft.DataProtection/vaults/backupResourceGuardProxies"

# The api-version whose shapes stored bodies have; newer versions add fields (model/versions.py).
SPEC_API_VERSION = "2023-01-01"


class Kind(StrEnum):
    """What a row of the resource table holds; also the literal ARM collection segment."""

    RESOURCE_GROUP = "resourceGroups"
    VAULT = "backupVaults"
    POLICY = "backupPolicies"
    INSTANCE = "backupInstances"
    DELETED_INSTANCE = "deletedBackupInstances"
    DELETED_VAULT = "deletedVaults"
    RESOURCE_GUARD = "resourceGuards"
    GUARD_PROXY = "backupResourceGuardProxies"
    # not an ARM resource: an open unlockDelete window of a guarded vault (child of the vault)
    UNLOCK = "dpvault.unlockDelete"


class OperationStatus(StrEnum):
    IN_PROGRESS = "InProgress"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELED = "Canceled"

    @property
    def terminal(self) -> bool:
        return self is not OperationStatus.IN_PROGRESS


class OperationKind(StrEnum):
    """What an operation does; decides what its result URL answers once it is done."""

    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    VALIDATE = "validate"
    BACKUP = "backup"
    EXPORT = "export"  # exportBackupJobs: the result is the report's URLs


class ProvisioningState(StrEnum):
    PROVISIONING = "Provisioning"
    UPDATING = "Updating"
    DELETING = "Deleting"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELED = "Canceled"


class ProtectionState(StrEnum):
    CONFIGURING = "ConfiguringProtection"
    CONFIGURING_FAILED = "ConfiguringProtectionFailed"
    CONFIGURED = "ProtectionConfigured"
    UPDATING = "UpdatingProtection"
    STOPPED = "ProtectionStopped"
    SOFT_DELETING = "SoftDeleting"
    SOFT_DELETED = "SoftDeleted"


# Datasource types that name the same thing: the examples normalise to "OssDB", clients send the ARM type.
DATASOURCE_ALIASES: dict[str, str] = {
    "ossdb": "microsoft.dbforpostgresql/servers/databases",
}


def canonical_datasource_type(value: str) -> str:
    """Lower-case key under which equivalent datasource type spellings compare equal."""
    lowered = value.lower()
    return DATASOURCE_ALIASES.get(lowered, lowered)

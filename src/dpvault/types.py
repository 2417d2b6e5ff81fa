"""The shared vocabulary: constants and enums used across dpvault. Imports nothing from dpvault."""

from __future__ import annotations

from enum import StrEnum

PROVIDER = "Microsoft.DataProtection"

# Canonical resource types, as ARM spells them in `type`.
VAULT_TYPE = "Microsoft.DataProtection/backupVaults"
POLICY_TYPE = "Microsoft.DataProtection/backupVaults/backupPolicies"
INSTANCE_TYPE = "Microsoft.DataProtection/backupVaults/backupInstances"
RESOURCE_GROUP_TYPE = "Microsoft.Resources/resourceGroups"

# The only api-version whose shapes dpvault serves; newer accepted versions answer in it.
SPEC_API_VERSION = "2023-01-01"


class Kind(StrEnum):
    """What a row of the resource table holds; also the literal ARM collection segment."""

    RESOURCE_GROUP = "resourceGroups"
    VAULT = "backupVaults"
    POLICY = "backupPolicies"
    INSTANCE = "backupInstances"


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


# Datasource types that name the same thing: the examples normalise to "OssDB", clients send the ARM type.
DATASOURCE_ALIASES: dict[str, str] = {
    "ossdb": "microsoft.dbforpostgresql/servers/databases",
}


def canonical_datasource_type(value: str) -> str:
    """Lower-case key under which equivalent datasource type spellings compare equal."""
    lowered = value.lower()
    return DATASOURCE_ALIASES.get(lowered, lowered)

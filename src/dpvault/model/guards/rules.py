"""Multi-user authorization without I/O: which vault operations are critical, which guard request
approves each, what a guard lists, and how an approval string is read.

A critical operation of a vault linked to a resource guard (and not in the guard's exclusion list)
needs the guard's approval: the request names ``<guard id>/<request type>/default`` in
``resourceGuardOperationRequests`` (deletes, which have no body, name it in a prior
``unlockDelete``), and the approval comes from the guard's owner. dpvault has no RBAC: the owner is
the tenant that owns the guard's subscription, speaking through the caller's token or a token in
``x-ms-authorization-auxiliary`` (resources/guardproxies/mua.py checks that part).
"""

from __future__ import annotations

from dataclasses import dataclass

from dpvault import errors
from dpvault.arm import ids
from dpvault.model.guards.schema import ResourceGuard, ResourceGuardOperation, ResourceGuardOperationDetail

_DP = "Microsoft.DataProtection/backupVaults"
DELETE_INSTANCE = f"{_DP}/backupInstances/delete"
DELETE_PROXY = f"{_DP}/backupResourceGuardProxies/delete"
REDUCE_IMMUTABILITY = f"{_DP}/write#reduceImmutabilityState"
REDUCE_SOFT_DELETE = f"{_DP}/write#reduceSoftDeleteSecurity"
MODIFY_ENCRYPTION = f"{_DP}/write#modifyEncryptionSettings"
STOP_PROTECTION = f"{_DP}/backupInstances/stopProtection/action"
SUSPEND_BACKUPS = f"{_DP}/backupInstances/suspendBackups/action"
MODIFY_INSTANCE = f"{_DP}/backupInstances/write"
RESTORE = f"{_DP}/backupInstances/restore/action"

# critical operation -> the request type (the guard's child collection) whose approval it needs,
# as the examples, PowerShell and the az CLI name them
REQUEST_TYPES: dict[str, str] = {
    DELETE_INSTANCE: "deleteBackupInstanceRequests",
    DELETE_PROXY: "deleteResourceGuardProxyRequests",
    REDUCE_IMMUTABILITY: "dppReduceImmutabilityStateRequests",
    REDUCE_SOFT_DELETE: "dppReduceSoftDeleteSecurityRequests",
    MODIFY_ENCRYPTION: "dppModifyEncryptionSettingsRequests",
    STOP_PROTECTION: "dppDisableStopProtectionRequests",
    SUSPEND_BACKUPS: "dppDisableSuspendBackupsRequests",
    MODIFY_INSTANCE: "dppModifyPolicy",
    RESTORE: "dppTriggerRestoreRequests",
}
# Azure: removing MUA protection and weakening soft delete cannot be excluded.
MANDATORY = frozenset({DELETE_PROXY, REDUCE_SOFT_DELETE})

# What a real guard lists (a 2024 recording of the real service): the Recovery Services vault
# operations first (dpvault has no such vaults; listed as Azure lists them), then the backup vault's.
_RSV = "Microsoft.RecoveryServices/vaults"
_GUARD_RT = "Microsoft.DataProtection/resourceGuards"
_RSV_OPERATIONS = (
    (f"{_RSV}/backupFabrics/protectionContainers/protectedItems/delete", "deleteProtectedItemRequests"),
    (f"{_RSV}/backupFabrics/protectionContainers/protectedItems/write", "updateProtectedItemRequests"),
    (f"{_RSV}/backupPolicies/write", "updateProtectionPolicyRequests"),
    (f"{_RSV}/backupResourceGuardProxies/delete", "deleteResourceGuardProxyRequests"),
    (f"{_RSV}/backupSecurityPIN/action", "getBackupSecurityPINRequests"),
    (f"{_RSV}/backupconfig/write", "disableSoftDeleteRequests"),
    (
        f"{_RSV}/backupFabrics/protectionContainers/protectedItems/write#stopProtectionWithRetainData",
        "stopProtectionWithRetainDataRequests",
    ),
    (f"{_RSV}/write#reduceImmutabilityState", "reduceImmutabilityStateRequests"),
    (
        f"{_RSV}/backupFabrics/protectionContainers/protectedItems/recoveryPoints/restore/action",
        "triggerRestoreRequests",
    ),
)
OPERATIONS: tuple[ResourceGuardOperation, ...] = tuple(
    ResourceGuardOperation(vaultCriticalOperation=op, requestResourceType=f"{_GUARD_RT}/{rt}")
    for op, rt in _RSV_OPERATIONS
) + tuple(ResourceGuardOperation(vaultCriticalOperation=op, requestResourceType=op) for op in REQUEST_TYPES)
_KNOWN = {
    op.vaultCriticalOperation.lower(): op.vaultCriticalOperation
    for op in OPERATIONS
    if op.vaultCriticalOperation
}

# The request collections the spec serves GETs of (under a guard), by path segment.
REQUEST_COLLECTIONS = (
    "disableSoftDeleteRequests",
    "deleteResourceGuardProxyRequests",
    "getBackupSecurityPINRequests",
    "deleteProtectedItemRequests",
    "updateProtectionPolicyRequests",
    "updateProtectedItemRequests",
)

DESCRIPTION = (
    "Critical operations of the vaults linked to this guard need the guard owner's approval "
    "(dpvault: a token of the tenant that owns the guard's subscription)."
)
UNLOCK_SECONDS = 3600.0  # how long an unlockDelete lets the named resource be deleted


def guard_properties(exclusions: list[str] | None) -> ResourceGuard:
    """The properties a guard is stored with: the operations it protects, the exclusions checked
    (known operations only, never a mandatory one), in the spelling of the operation list."""
    checked: list[str] = []
    for n, name in enumerate(exclusions or []):
        canonical = _KNOWN.get(name.lower())
        target = f"properties.vaultCriticalOperationExclusionList[{n}]"
        if canonical is None:
            raise errors.bad_request(
                f"'{ids.printable(name)}' is not a critical operation this guard protects.", target=target
            )
        if canonical in MANDATORY:
            raise errors.bad_request(
                f"'{canonical}' is mandatory: it cannot be excluded from the resource guard's protection.",
                code="UserErrorMandatoryCriticalOperation",
                target=target,
            )
        if canonical not in checked:
            checked.append(canonical)
    return ResourceGuard(
        provisioningState="Succeeded",
        allowAutoApprovals=True,
        resourceGuardOperations=list(OPERATIONS),
        vaultCriticalOperationExclusionList=checked,
        description=DESCRIPTION,
    )


def operation_details(guard_id: str, guard: ResourceGuard) -> list[ResourceGuardOperationDetail]:
    """What a proxy lists: each backup vault operation the guard protects, with its default request."""
    excluded = set(guard.vaultCriticalOperationExclusionList or [])
    return [
        ResourceGuardOperationDetail(
            vaultCriticalOperation=op, defaultResourceRequest=f"{guard_id}/{rt}/default"
        )
        for op, rt in REQUEST_TYPES.items()
        if op not in excluded
    ]


@dataclass(frozen=True, slots=True)
class Guard:
    """The guard a vault is linked to, as far as deciding an operation needs."""

    guard_id: str  # as the proxy names it
    subscription: str  # the guard's (its owner's tenant approves)
    excluded: frozenset[str]

    def protects(self, operation: str) -> bool:
        return operation not in self.excluded


def names_request(requests: list[str] | None, guard_id: str, operation: str) -> bool:
    """True when ``requests`` holds the guard's request for ``operation``:
    ``<guard id>/<request type>/<name>`` (any name; "default" is what clients send)."""
    wanted = f"{guard_id.rstrip('/')}/{REQUEST_TYPES[operation]}/".lower()
    return any(r.strip().lower().startswith(wanted) and len(r.strip()) > len(wanted) for r in requests or [])


def guard_subscription(guard_id: str) -> str | None:
    """The subscription of a resource guard id, or None when ``guard_id`` is not one."""
    parts = guard_id.strip("/").split("/")
    literals = [p.lower() for p in parts[0::2]]
    if (
        len(parts) != 8
        or literals != ["subscriptions", "resourcegroups", "providers", "resourceguards"]
        or parts[5].lower() != "microsoft.dataprotection"
    ):
        return None
    return parts[1]

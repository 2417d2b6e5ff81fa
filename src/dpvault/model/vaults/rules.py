"""Decisions about vaults that need no I/O: the stored body, locations, the managed identity."""

from __future__ import annotations

import uuid

import msgspec

from dpvault import errors
from dpvault.arm import ids
from dpvault.model.guards.rules import MODIFY_ENCRYPTION, REDUCE_IMMUTABILITY, REDUCE_SOFT_DELETE
from dpvault.model.immutability import check_transition
from dpvault.model.vaults.schema import (
    BackupVault,
    BackupVaultResource,
    DppIdentityDetails,
    SoftDeleteSettings,
    UserAssignedIdentity,
)
from dpvault.store import ResourceRow

_decoder = msgspec.json.Decoder(BackupVaultResource)


def decode_vault(body: bytes) -> BackupVaultResource:
    return _decoder.decode(body)


def vault_location(row: ResourceRow) -> str:
    return normalize_location(decode_vault(row.body).location)


def normalize_location(location: str) -> str:
    """ARM-7: locations compare without case and spaces ("West US" == "westus")."""
    return location.replace(" ", "").lower()


def identity_for(
    requested: DppIdentityDetails | None, previous: DppIdentityDetails | None, tenant: str
) -> DppIdentityDetails | None:
    """A SystemAssigned identity gets a stable principal id; "None" (or absent) has none;
    UserAssigned (2023-05-01+) keeps the identities named in ``userAssignedIdentities``, each with
    a stable principal and client id (dpvault uses none of them: credentials come from secrets)."""
    if requested is None:
        return previous
    kind = (requested.type or "None").replace(" ", "")
    parts = {p.lower() for p in kind.split(",")}
    if parts == {"none"}:
        return DppIdentityDetails(type="None")
    if not parts <= {"systemassigned", "userassigned"}:
        raise errors.bad_request(
            f"The identity type '{ids.printable(requested.type or '')}' is not supported; expected one of: "
            "SystemAssigned, UserAssigned, 'SystemAssigned,UserAssigned', None.",
            target="identity.type",
        )
    system = "systemassigned" in parts
    user = "userassigned" in parts
    principal = None
    if system:
        principal = previous.principalId if previous and previous.principalId else str(uuid.uuid4())
    assigned = None
    if user:
        if not requested.userAssignedIdentities:
            raise errors.bad_request(
                "A UserAssigned identity needs 'userAssignedIdentities' (the identities' ARM ids).",
                target="identity.userAssignedIdentities",
            )
        known = {
            k.lower(): v for k, v in ((previous.userAssignedIdentities or {}) if previous else {}).items()
        }
        assigned = {}
        for arm_id in requested.userAssignedIdentities:
            kept = known.get(arm_id.lower())
            assigned[arm_id] = kept or UserAssignedIdentity(
                principalId=str(uuid.uuid4()), clientId=str(uuid.uuid4())
            )
    name = (
        "SystemAssigned,UserAssigned" if system and user else "SystemAssigned" if system else "UserAssigned"
    )
    return DppIdentityDetails(
        type=name, principalId=principal, tenantId=tenant if system else None, userAssignedIdentities=assigned
    )


# -- security settings (issue 13) ---------------------------------------------------------------

SOFT_DELETE_MIN_DAYS = 14.0
SOFT_DELETE_MAX_DAYS = 180.0
SOFT_DELETE_DEFAULT_DAYS = 14.0
_SOFT = "properties.securitySettings.softDeleteSettings"

_IMMUTABILITY_RANK = {"Disabled": 0, "Unlocked": 1, "Locked": 2}


def soft_delete_of(vault: BackupVault | None) -> SoftDeleteSettings | None:
    security = vault.securitySettings if vault is not None else None
    return security.softDeleteSettings if security is not None else None


def soft_delete_days(vault: BackupVault) -> float | None:
    """The retention of soft-deleted items, in days; None when soft delete is off."""
    soft = soft_delete_of(vault)
    if soft is None or soft.state not in ("On", "AlwaysOn"):
        return None
    return soft.retentionDurationInDays or SOFT_DELETE_DEFAULT_DAYS


def security_change(previous: BackupVault | None, props: BackupVault) -> tuple[BackupVault, list[str]]:
    """``props`` with its security settings decided, and the critical operations the change is.

    Settings a write leaves out are kept (a PUT without ``securitySettings`` must not switch an
    AlwaysOn soft delete off). Soft delete "Enabled" (the newer examples' word) is On; On and
    AlwaysOn keep deleted items 14-180 days (14 unless given); AlwaysOn can never be turned off or
    back to On (400, as Azure)."""
    before = previous.securitySettings if previous is not None else None
    security = props.securitySettings
    if security is None:
        return msgspec.structs.replace(props, securitySettings=before), []
    old_soft = before.softDeleteSettings if before is not None else None
    soft = security.softDeleteSettings or old_soft
    if soft is not None:
        soft = _checked_soft_delete(soft, old_soft)
    immutability = security.immutabilitySettings or (before.immutabilitySettings if before else None)
    encryption = security.encryptionSettings or (before.encryptionSettings if before else None)
    security = msgspec.structs.replace(
        security, softDeleteSettings=soft, immutabilitySettings=immutability, encryptionSettings=encryption
    )
    critical = []
    if _weaker_soft_delete(old_soft, soft):
        critical.append(REDUCE_SOFT_DELETE)
    old_state = before.immutabilitySettings.state if before and before.immutabilitySettings else None
    new_state = immutability.state if immutability else None
    check_transition(old_state, new_state, "properties.securitySettings.immutabilitySettings.state")
    if _IMMUTABILITY_RANK.get(new_state or "Disabled", 0) < _IMMUTABILITY_RANK.get(
        old_state or "Disabled", 0
    ):
        critical.append(REDUCE_IMMUTABILITY)
    old_encryption = before.encryptionSettings if before else None
    if previous is not None and encryption != old_encryption:
        critical.append(MODIFY_ENCRYPTION)
    return msgspec.structs.replace(props, securitySettings=security), critical


def _checked_soft_delete(soft: SoftDeleteSettings, old: SoftDeleteSettings | None) -> SoftDeleteSettings:
    state = "On" if soft.state == "Enabled" else soft.state or (old.state if old else None) or "Off"
    if old is not None and old.state == "AlwaysOn" and state != "AlwaysOn":
        raise errors.bad_request(
            f"Soft delete is AlwaysOn for this vault and cannot be changed to {state}: AlwaysOn is irreversible.",
            code="UserErrorSoftDeleteAlwaysOnCannotBeDisabled",
            target=f"{_SOFT}.state",
        )
    days = soft.retentionDurationInDays
    if state == "Off":
        return SoftDeleteSettings(state="Off", retentionDurationInDays=days)
    if days is None:
        days = (old.retentionDurationInDays if old is not None else None) or SOFT_DELETE_DEFAULT_DAYS
    if not SOFT_DELETE_MIN_DAYS <= days <= SOFT_DELETE_MAX_DAYS:
        raise errors.bad_request(
            f"The soft delete retention must be {SOFT_DELETE_MIN_DAYS:.0f} to {SOFT_DELETE_MAX_DAYS:.0f} days, "
            f"not {days:g}.",
            code="UserErrorInvalidSoftDeleteRetentionPeriod",
            target=f"{_SOFT}.retentionDurationInDays",
        )
    return SoftDeleteSettings(state=state, retentionDurationInDays=float(days))  # type: ignore[arg-type]


def _weaker_soft_delete(old: SoftDeleteSettings | None, new: SoftDeleteSettings | None) -> bool:
    """Turning soft delete off, or keeping deleted items fewer days, reduces the vault's security."""
    if old is None or old.state not in ("On", "AlwaysOn"):
        return False
    if new is None or new.state not in ("On", "AlwaysOn"):
        return True
    return (new.retentionDurationInDays or 0) < (old.retentionDurationInDays or 0)

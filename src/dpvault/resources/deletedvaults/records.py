"""How a vault becomes a deleted vault and comes back (in the vault DELETE's or PUT's transaction).

A vault with soft delete On or AlwaysOn is not destroyed by DELETE: a record of it (its body and its
policies; a vault being deleted holds no instances) is kept under
``/subscriptions/{s}/providers/Microsoft.DataProtection/locations/{l}/deletedVaults/{guid}`` until
its retention days pass (the core's purge), and its name is free for a new vault meanwhile. A PUT of
the vault (its original name) with ``x-ms-deleted-vault-id`` (the record's id, or its GUID name as
PowerShell sends it) brings it back with its policies and settings.
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from dpvault import errors
from dpvault.arm import ids
from dpvault.clock import from_timestamp
from dpvault.model.vaults.rules import normalize_location
from dpvault.services import Services
from dpvault.store import ResourceRow, SoftDeletionRow, Tx
from dpvault.types import DELETED_VAULT_TYPE, Kind, ProvisioningState

HEADER = "x-ms-deleted-vault-id"
DEPLOYED_IN = "2025-09-01"  # the first api-version with deleted vaults (Learn, .NET, PowerShell)


def location_scope(sub: str, location: str) -> str:
    return f"/subscriptions/{sub}/providers/Microsoft.DataProtection/locations/{normalize_location(location)}"


def deleted_vault_id(sub: str, location: str, name: str) -> str:
    return f"{location_scope(sub, location)}/deletedVaults/{name}"


def not_found(value: str) -> errors.ArmError:
    return errors.ArmError(
        404,
        "UserErrorGenericResourceNotFound",
        f"Azure resource does not exist: no deleted backup vault '{ids.printable(value)}'. "
        "Please make sure required resources exist.",
    )


async def soft_delete(
    tx: Tx, svc: Services, row: ResourceRow, vault: dict[str, Any], days: float, sub: str, rg: str
) -> str:
    """Record the vault (and its policies) as deleted; the caller removes the live rows. Returns the
    deleted vault's name (a GUID)."""
    now = svc.now()
    name = str(uuid.uuid4())
    location = normalize_location(vault.get("location") or svc.settings.default_location)
    purge_at = now + days * 86400.0
    activity = str(uuid.uuid4())
    policies = [
        {"key": p.key, "name": p.name, "body": msgspec.json.decode(p.body), "revision": p.revision}
        for p in await tx.resources_by(Kind.POLICY.value, parent_key=row.key)
    ]
    original_id = ids.vault_id(sub, rg, row.name)
    props = {
        **vault.get("properties", {}),
        "provisioningState": ProvisioningState.SUCCEEDED.value,
        "isVaultProtectedByResourceGuard": False,
        "originalBackupVaultId": original_id,
        "originalBackupVaultName": row.name,
        "originalBackupVaultResourcePath": original_id,
        "resourceDeletionInfo": {
            "deletionTime": from_timestamp(now),
            "scheduledPurgeTime": from_timestamp(purge_at),
            "deleteActivityId": activity,
        },
    }
    record = {
        "id": deleted_vault_id(sub, location, name),
        "name": name,
        "type": DELETED_VAULT_TYPE,
        "properties": props,
    }
    key = ids.key(record["id"])
    await tx.insert_resource(
        key=key, kind=Kind.DELETED_VAULT.value, subscription=sub.lower(), rg_key=row.rg_key,
        parent_key=ids.key(location_scope(sub, location)), name=name, body=msgspec.json.encode(record),
        state=ProvisioningState.SUCCEEDED.value, active_operation=None, revision=1, created_at=now, updated_at=now,
    )  # fmt: skip
    original = {"vault": vault, "vaultKey": row.key, "vaultName": row.name, "policies": policies}
    await tx.insert_soft_deletion(
        key=key, kind=Kind.VAULT.value, original_key=row.key, vault_key=row.key, subscription=sub.lower(),
        deleted_at=now, purge_at=purge_at, activity_id=activity, original=msgspec.json.encode(original),
    )  # fmt: skip
    svc.wake_scheduler(purge_at)
    return name


async def find(
    tx: Tx, sub: str, header: str, location: str
) -> tuple[ResourceRow, SoftDeletionRow, dict[str, Any]]:
    """The deleted vault ``header`` names (an id, or the GUID name with the PUT's location)."""
    value = header.strip().rstrip("/")
    parts = value.split("/")
    if len(parts) > 1:
        literals = [p.lower() for p in parts[1::2]]
        # deletedVaults is the path; deletedBackupVaults the examples' spelling of the same
        if (
            literals[:3] != ["subscriptions", "providers", "locations"]
            or len(parts) != 9
            or literals[3]
            not in (
                "deletedvaults",
                "deletedbackupvaults",
            )
        ):
            raise errors.bad_request(
                f"The {HEADER} header '{ids.printable(value)}' is not a deleted vault id (/subscriptions/…/providers/"
                "Microsoft.DataProtection/locations/…/deletedVaults/…) nor a deleted vault name.",
                target=HEADER,
            )
        if parts[2].lower() != sub.lower():
            raise not_found(value)
        key = ids.key(deleted_vault_id(sub, parts[6], parts[8]))
    else:
        key = ids.key(deleted_vault_id(sub, location, value))
    row = await tx.resource(key)
    record = await tx.soft_deletion(key) if row is not None else None
    if row is None or record is None:
        raise not_found(value)
    return row, record, msgspec.json.decode(record.original)


async def restore(tx: Tx, svc: Services, row: ResourceRow, original: dict[str, Any]) -> None:
    """After the vault row is back: its policies too, and the deleted record goes."""
    now = svc.now()
    vault_key = original["vaultKey"]
    for policy in original.get("policies", []):
        if await tx.resource(policy["key"]) is not None:
            continue
        await tx.insert_resource(
            key=policy["key"], kind=Kind.POLICY.value, subscription=row.subscription, rg_key=row.rg_key,
            parent_key=vault_key, name=policy["name"], body=msgspec.json.encode(policy["body"]), state="Succeeded",
            active_operation=None, revision=policy.get("revision", 1), created_at=now, updated_at=now,
        )  # fmt: skip
    await tx.delete_resource(row.key)
    await tx.delete_soft_deletion(row.key)

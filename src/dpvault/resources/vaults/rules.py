"""Decisions about vaults: lookups shared by child resources, and how a stored vault body is built."""

from __future__ import annotations

import uuid

import msgspec

from dpvault import errors
from dpvault.arm import ids
from dpvault.resources import groups
from dpvault.resources.vaults.schema import BackupVaultResource, DppIdentityDetails
from dpvault.store import ResourceRow, Tx

_decoder = msgspec.json.Decoder(BackupVaultResource)


def vault_key(sub: str, rg: str, vault: str) -> str:
    return ids.key(ids.vault_id(sub, rg, vault))


async def require_vault(tx: Tx, sub: str, rg: str, vault: str, *, lock: bool | str = "share") -> ResourceRow:
    """The vault row, or ARM's 404 for the group or the vault. In a write, the vault is held FOR
    SHARE by default: it cannot be deleted meanwhile, and writes of its children run side by side."""
    row = await tx.resource(vault_key(sub, rg, vault), lock=lock)
    if row is None:
        await groups.require(tx, sub, rg)
        raise errors.resource_not_found(f"Microsoft.DataProtection/backupVaults/{vault}", rg)
    return row


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
    """A SystemAssigned identity gets a stable principal id; "None" (or absent) has none."""
    if requested is None:
        return previous
    kind = (requested.type or "None").strip()
    if kind.lower() == "systemassigned":
        principal = previous.principalId if previous and previous.principalId else str(uuid.uuid4())
        return DppIdentityDetails(type="SystemAssigned", principalId=principal, tenantId=tenant)
    if kind.lower() == "none":
        return DppIdentityDetails(type="None")
    raise errors.bad_request(
        f"The identity type '{ids.printable(kind)}' is not supported; expected one of: SystemAssigned, None.",
        target="identity.type",
    )

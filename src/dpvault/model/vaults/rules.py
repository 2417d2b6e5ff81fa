"""Decisions about vaults that need no I/O: the stored body, locations, the managed identity."""

from __future__ import annotations

import uuid

import msgspec

from dpvault import errors
from dpvault.arm import ids
from dpvault.model.vaults.schema import BackupVaultResource, DppIdentityDetails
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

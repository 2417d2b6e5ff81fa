"""Finding the vault a request names, in the request's transaction (shared by its child resources)."""

from __future__ import annotations

from dpvault import errors
from dpvault.model.keys import vault_key
from dpvault.resources import groups
from dpvault.store import ResourceRow, Tx


async def require_vault(tx: Tx, sub: str, rg: str, vault: str, *, lock: bool | str = "share") -> ResourceRow:
    """The vault row, or ARM's 404 for the group or the vault. In a write, the vault is held FOR
    SHARE by default: it cannot be deleted meanwhile, and writes of its children run side by side."""
    row = await tx.resource(vault_key(sub, rg, vault), lock=lock)
    if row is None:
        await groups.require(tx, sub, rg)
        raise errors.resource_not_found(f"Microsoft.DataProtection/backupVaults/{vault}", rg)
    return row

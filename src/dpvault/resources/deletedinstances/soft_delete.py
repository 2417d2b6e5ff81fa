"""What a backup-instance DELETE checks before it starts (issue 13), in the DELETE's transaction:
the resource guard's approval (an open unlockDelete window) and whether the vault soft-deletes."""

from __future__ import annotations

from dpvault import errors
from dpvault.model.guards import rules as guard_rules
from dpvault.model.instances.rules import deleted_instance_key
from dpvault.model.instances.schema import BackupInstanceResource
from dpvault.model.vaults.rules import decode_vault, soft_delete_days
from dpvault.resources.guardproxies.mua import Approval
from dpvault.store import ResourceRow, Tx


async def check_delete(
    tx: Tx, approval: Approval, vault_row: ResourceRow, row: ResourceRow, resource: BackupInstanceResource
) -> float | None:
    """403 unless a guarded vault's delete was unlocked; returns the soft-delete retention in days
    (None: the vault deletes for good). A name whose earlier instance is still soft-deleted cannot
    be soft-deleted again (409) until that one is undeleted or purged."""
    await approval.require_unlocked(
        tx, vault_row, guard_rules.DELETE_INSTANCE, resource.id or "", "Deleting a backup instance"
    )
    days = soft_delete_days(decode_vault(vault_row.body).properties)
    if days is not None and await tx.resource(deleted_instance_key(vault_row.key, row.name), lock=False):
        raise errors.conflict(
            f"A soft-deleted backup instance named '{row.name}' is kept in this vault until it is purged; "
            "undelete it (and delete it again) or wait for its purge.",
            code="UserErrorSoftDeletedBackupInstanceExists",
        )
    return days

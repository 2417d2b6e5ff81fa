"""Finding what a backup-instance request names, in the request's transaction: ARM's 404s and the
policy checks that need the stored policy."""

from __future__ import annotations

from dpvault import errors
from dpvault.model.instances.rules import policy_key_of
from dpvault.model.instances.schema import BackupInstance
from dpvault.model.keys import instance_key
from dpvault.model.policies.rules import decode_policy
from dpvault.model.policies.schema import BaseBackupPolicyResource
from dpvault.store import ResourceRow, Tx
from dpvault.types import canonical_datasource_type


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

"""``GET …/backupVaults/{v}/deletedBackupInstances[/{name}]`` and ``POST …/{name}/undelete`` (LRO,
done at once: 202 with Azure-AsyncOperation and Location, the operation already Succeeded).

Undelete brings the instance back ProtectionStopped with its recovery points (resumeProtection
then restarts its backups). dpvault also serves (beyond Azure) the recovery points a deleted
instance keeps, at ``…/deletedBackupInstances/{name}/recoveryPoints[/{id}]``, read-only.
"""

from __future__ import annotations

import msgspec

from dpvault import errors
from dpvault.arm import ids, paging
from dpvault.arm.http import Call, Reply, encode
from dpvault.model import operations
from dpvault.model.instances import rules
from dpvault.model.keys import instance_key
from dpvault.model.vaults.rules import vault_location
from dpvault.model.versions import instance_body, recovery_point_view
from dpvault.protection.service import Protection
from dpvault.resources.common import check_provider_call, fingerprint, system_data
from dpvault.resources.operations import accepted, lifecycle_result
from dpvault.resources.recoverypoints.handlers import render
from dpvault.resources.vaults.lookups import require_vault
from dpvault.services import Services
from dpvault.store import ResourceRow, Tx
from dpvault.types import Kind, OperationKind, OperationStatus, ProvisioningState

RESOURCE_TYPE = "backupVaults/deletedBackupInstances"


def not_soft_deleted(name: str) -> errors.ArmError:
    """The real service's answer for a name that is not soft-deleted (2025-07-01 recording)."""
    return errors.ArmError(
        404,
        "UserErrorGenericResourceNotFound",
        f"Azure resource does not exist: no soft-deleted backup instance '{ids.printable(name)}' in this vault. "
        "Please make sure required resources exist.",
    )


def _names(call: Call) -> tuple[str, str, str]:
    p = call.params
    return (
        p["subscriptionId"],
        ids.check_resource_group(p["resourceGroupName"]),
        ids.check_resource_name(p["vaultName"], "backup vault"),
    )


class DeletedInstanceRoutes:
    def __init__(self, svc: Services, protection: Protection) -> None:
        self.svc = svc
        self.protection = protection

    async def _record(self, tx: Tx, call: Call) -> tuple[ResourceRow, ResourceRow, str]:
        sub, rg, vault = _names(call)
        name = ids.check_resource_name(call.params["backupInstanceName"], "backup instance")
        vault_row = await require_vault(tx, sub, rg, vault)
        row = await tx.resource(rules.deleted_instance_key(vault_row.key, name))
        if row is None:
            raise not_soft_deleted(name)
        return vault_row, row, name

    async def list(self, call: Call) -> Reply:
        version = check_provider_call(self.svc, call, RESOURCE_TYPE)
        sub, rg, vault = _names(call)
        after, size = paging.window(call, self.svc.settings.page_size)
        async with self.svc.store.read() as tx:
            vault_row = await require_vault(tx, sub, rg, vault)
            rows = await tx.resources_by(
                Kind.DELETED_INSTANCE.value, parent_key=vault_row.key, after_pk=after, limit=size + 1
            )
        more = len(rows) > size
        rows = rows[:size]
        items = [instance_body(r.body, version) for r in rows]
        return Reply.json(200, paging.body(call, items, str(rows[-1].pk) if more else None))

    async def get(self, call: Call) -> Reply:
        version = check_provider_call(self.svc, call, RESOURCE_TYPE)
        async with self.svc.store.read() as tx:
            _vault, row, _name = await self._record(tx, call)
        return Reply.json(200, instance_body(row.body, version))

    async def undelete(self, call: Call) -> Reply:
        version = check_provider_call(self.svc, call, RESOURCE_TYPE + "/undelete")
        sub, rg, vault = _names(call)

        async def write(tx: Tx) -> tuple[str, operations.Scope]:
            vault_row, row, name = await self._record(tx, call)
            scope = operations.Scope(sub, rg, vault, vault_location(vault_row))
            live_key = instance_key(vault_row.key, row.name)
            if await tx.resource(live_key) is not None:
                raise errors.conflict(
                    f"A backup instance named '{row.name}' exists in the vault; delete it before undeleting "
                    "the soft-deleted one.",
                    code="UserErrorBackupInstanceExists",
                )
            record = await tx.soft_deletion(row.key)
            if record is None:  # its purge is under way
                raise not_soft_deleted(name)
            original = rules.decode_instance(record.original)
            now = self.svc.now()
            restored = msgspec.structs.replace(
                rules.undeleted(original), systemData=system_data(call, now, original.systemData)
            )
            await tx.insert_resource(
                key=live_key, kind=Kind.INSTANCE.value, subscription=row.subscription, rg_key=row.rg_key,
                parent_key=row.parent_key, name=row.name, body=msgspec.json.encode(restored),
                state=ProvisioningState.SUCCEEDED.value, active_operation=None, revision=1, created_at=now,
                updated_at=now,
            )  # fmt: skip
            await self.protection.soft_deletes.release(
                tx, held_key=row.key, instance_key=live_key, vault_key=row.parent_key,
                policy_key=original.properties.policyInfo.policyId.lower(),
            )  # fmt: skip
            await tx.delete_resource(row.key)
            await tx.delete_soft_deletion(row.key)
            op = await operations.start(
                tx, now=now, kind=OperationKind.UPDATE, scope=scope, resource_key=live_key,
                resource_path=restored.id or "", api_version=version, request_hash=fingerprint("undelete"),
            )  # fmt: skip
            await operations.finish(
                tx, op.id, now=now, status=OperationStatus.SUCCEEDED, result=lifecycle_result(version), op=op
            )
            return op.id, scope

        op_id, scope = await self.svc.store.transact(write)
        return accepted(call, scope, op_id, version, self.svc.settings.retry_after)

    # -- dpvault's own: the points a deleted instance keeps -----------------------------------

    async def recovery_points(self, call: Call) -> Reply:
        version = check_provider_call(self.svc, call, RESOURCE_TYPE + "/recoveryPoints")
        async with self.svc.store.read() as tx:
            _vault, row, _name = await self._record(tx, call)
            points = await tx.recovery_points_of(row.key)
        record_id = msgspec.json.decode(row.body)["id"]
        items = [encode(recovery_point_view(render(p, record_id), version)) for p in points]
        return Reply.json(200, paging.body(call, items, None))

    async def recovery_point(self, call: Call) -> Reply:
        version = check_provider_call(self.svc, call, RESOURCE_TYPE + "/recoveryPoints")
        rp_id = call.params["recoveryPointId"]
        async with self.svc.store.read() as tx:
            _vault, row, name = await self._record(tx, call)
            rp = await tx.recovery_point(rp_id.lower())
        if rp is None or rp.instance_key != row.key or rp.state != "available":
            raise errors.resource_not_found(
                f"Microsoft.DataProtection/backupVaults/{call.params['vaultName']}/deletedBackupInstances/{name}"
                f"/recoveryPoints/{ids.printable(rp_id)}",
                call.params["resourceGroupName"],
            )
        return Reply.json(200, recovery_point_view(render(rp, msgspec.json.decode(row.body)["id"]), version))

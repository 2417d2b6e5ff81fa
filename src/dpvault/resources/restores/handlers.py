"""``POST …/backupInstances/{bi}/restore`` and ``…/validateRestore`` (LRO, final state via Location).

The request is checked here (shape, recovery point, target kind); the target itself (its contents,
the point's checksum) is checked by the job, which records a Restore/ValidateRestore backup job.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

import msgspec

from dpvault import errors
from dpvault.arm import ids
from dpvault.arm.http import Call, Reply
from dpvault.arm.schema import decode
from dpvault.clock import from_timestamp
from dpvault.errors import UserError
from dpvault.model import backup_jobs, operations, payloads
from dpvault.model.guards import rules as guard_rules
from dpvault.model.instances import rules
from dpvault.model.instances.schema import BackupInstance
from dpvault.model.keys import instance_key
from dpvault.model.policies.schedule import ScheduleError, parse_datetime
from dpvault.model.restores.schema import (
    AzureBackupRecoveryTimeBasedRestoreRequest,
    ItemLevelRestoreTargetInfo,
    RestoreFilesTargetInfo,
    RestoreRequest,
    ValidateRestoreRequestObject,
)
from dpvault.model.schema import Base
from dpvault.model.vaults.rules import vault_location
from dpvault.protection.restore_blobs import is_blob_target, parse_target
from dpvault.protection.restore_files import check_names, check_prefix, target_directory
from dpvault.protection.service import Protection
from dpvault.resources.common import check_provider_call, fingerprint
from dpvault.resources.guardproxies.mua import Approval
from dpvault.resources.instances.lookups import require_instance
from dpvault.resources.operations import accepted
from dpvault.resources.vaults.lookups import require_vault
from dpvault.services import Services
from dpvault.store import RecoveryPointRow, ResourceRow, Tx
from dpvault.types import OperationKind, OperationStatus, ProvisioningState


class DrillRequest(Base):
    recoveryPointId: str  # noqa: N815 - the JSON name


def _bad(message: str, target: str, code: str = "InvalidRestoreRequest") -> errors.ArmError:
    return errors.bad_request(message, code=code, target=target)


def _at(base: str, name: str) -> str:
    return f"{base}.{name}" if base else name


class RestoreRoutes:
    def __init__(self, svc: Services, protection: Protection) -> None:
        self.svc = svc
        self.protection = protection

    def _check_target(self, request: Any, base: str) -> None:
        target = request.restoreTargetInfo
        if request.sourceDataStoreType != "VaultStore":
            raise _bad(
                f"Only VaultStore recovery points exist here, not {request.sourceDataStoreType}.",
                _at(base, "sourceDataStoreType"),
            )
        if isinstance(target, RestoreFilesTargetInfo):
            try:
                if is_blob_target(msgspec.to_builtins(target.targetDetails)):
                    parse_target(msgspec.to_builtins(target.targetDetails))
                    return
                directory = target_directory(target.targetDetails.url, self.svc.settings.restore_dirs)
                check_names(directory, check_prefix(target.targetDetails.filePrefix))
            except UserError as exc:
                raise _bad(exc.message, _at(base, "restoreTargetInfo.targetDetails"), code=exc.code) from None

    def _check_kind(self, target: Any, source: BackupInstance, base: str) -> None:
        """What the instance's engine restores: items (blobs) or not, as files or not."""
        engine = self.protection.engine_for(source)
        kind = source.dataSourceInfo.datasourceType
        if isinstance(target, ItemLevelRestoreTargetInfo) and not getattr(engine, "restores_items", False):
            raise _bad(f"Item-level restore is not supported for datasource type '{kind}'.",
                       _at(base, "restoreTargetInfo.objectType"), code="UserErrorRestoreTargetNotSupported")  # fmt: skip
        check_request = getattr(engine, "check_restore_request", None)
        if check_request is not None:
            try:
                check_request(msgspec.to_builtins(target))
            except UserError as exc:
                raise _bad(
                    exc.message, _at(base, "restoreTargetInfo.restoreCriteria"), code=exc.code
                ) from None
        if isinstance(target, RestoreFilesTargetInfo) and not getattr(engine, "restores_as_files", True):
            raise _bad(f"A '{kind}' recovery point restores into a storage account, not as files: use "
                       "RestoreTargetInfo or ItemLevelRestoreTargetInfo.",
                       _at(base, "restoreTargetInfo.objectType"), code="UserErrorRestoreTargetNotSupported")  # fmt: skip

    async def _check_mapped(self, target: dict[str, Any], subscription: str, base: str) -> None:
        """A blob container's storage account must be mapped (dpvault sources set): said at the request,
        as the handler can tell; the job checks again (the mapping may go meanwhile)."""
        details = target.get("targetDetails")
        if target.get("objectType") != "RestoreFilesTargetInfo" or not details or not is_blob_target(details):
            return
        blob = parse_target(details)
        try:
            if blob.account_id is not None:
                await self.protection.sources.source(blob.account_id, subscription)
            else:
                await self.protection.sources.storage_account(blob.account, subscription)
        except UserError as exc:
            raise _bad(exc.message, _at(base, "restoreTargetInfo.targetDetails"), code=exc.code) from None

    async def _point(self, tx: Tx, instance: ResourceRow, request: Any, base: str) -> RecoveryPointRow:
        if isinstance(request, AzureBackupRecoveryTimeBasedRestoreRequest):
            try:
                moment = parse_datetime(request.recoveryPointTime)
            except ScheduleError as exc:
                raise _bad(str(exc), _at(base, "recoveryPointTime")) from None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            t = moment.timestamp()
            points = await tx.recovery_points_of(instance.key, start=t - 5e-7, end=t + 5e-7)
            if not points:
                nearby = [
                    from_timestamp(p.time) for p in (await tx.recovery_points_of(instance.key, limit=5))
                ]
                raise _bad(
                    f"No recovery point was taken at {request.recoveryPointTime}: PostgreSQL backups restore to "
                    f"discrete points only. Recent points: {', '.join(nearby) or 'none'}.",
                    _at(base, "recoveryPointTime"), code="UserErrorRecoveryPointNotFound",
                )  # fmt: skip
            return points[0]
        rp = await tx.recovery_point(request.recoveryPointId.strip().lower())
        if rp is None or rp.instance_key != instance.key or rp.state != "available":
            raise _bad(
                f"The recovery point '{ids.printable(request.recoveryPointId)}' does not exist for this backup instance.",
                _at(base, "recoveryPointId"), code="UserErrorRecoveryPointNotFound",
            )  # fmt: skip
        return rp

    async def _start(self, call: Call, request: RestoreRequest, *, validate: bool) -> Reply:
        version = check_provider_call(self.svc, call, "backupVaults/backupInstances/restore")
        p = call.params
        sub, rg = p["subscriptionId"], ids.check_resource_group(p["resourceGroupName"])
        vault = ids.check_resource_name(p["vaultName"], "backup vault")
        name = ids.check_resource_name(p["backupInstanceName"], "backup instance")
        base = "restoreRequestObject" if validate else ""
        self._check_target(request, base)
        target = msgspec.to_builtins(request.restoreTargetInfo)
        async with self.svc.store.read() as tx:  # a vault or instance that is not there is the first answer
            await require_instance(tx, await require_vault(tx, sub, rg, vault), name, vault=vault, rg=rg)
        await self._check_mapped(target, sub, base)
        if "datasourceAuthCredentials" in target and target["datasourceAuthCredentials"].get(
            "secretStoreResource"
        ):
            target["datasourceAuthCredentials"]["secretStoreResource"].pop("value", None)  # never stored

        approval = Approval(self.svc, call)

        async def write(tx: Tx) -> tuple[str, operations.Scope]:
            vault_row = await require_vault(tx, sub, rg, vault)
            scope = operations.Scope(sub, rg, vault, vault_location(vault_row))
            row = await require_instance(tx, vault_row, name, vault=vault, rg=rg)
            if not validate:  # issue 13: a restore is a critical operation of a guarded vault
                await approval.require(
                    tx, vault_row, guard_rules.RESTORE, request.resourceGuardOperationRequests, "A restore"
                )
            if row.state == ProvisioningState.DELETING:
                raise errors.conflict(
                    f"Backup instance '{name}' is being deleted, with its recovery points.",
                    code="AnotherOperationInProgress",
                )
            rp = await self._point(tx, row, request, base)
            resource = rules.decode_instance(row.body)
            self._check_kind(request.restoreTargetInfo, resource.properties, base)
            files = isinstance(request.restoreTargetInfo, RestoreFilesTargetInfo)
            destination = request.restoreTargetInfo.targetDetails.url if files else (
                request.restoreTargetInfo.datasourceInfo.resourceID)  # type: ignore[union-attr]  # fmt: skip
            job_id = await backup_jobs.create(
                tx, now=self.svc.now(), subscription=sub, vault_key=vault_row.key, vault_name=vault_row.name,
                instance_key=row.key, instance_id=resource.id, instance=resource.properties,
                operation="ValidateRestore" if validate else "Restore", category="Restore", user_triggered=True,
                details={"RecoveryPointId": rp.id}, recovery_point_id=None if validate else rp.id,
                extra={
                    "restoreType": "RestoreAsFiles" if files else "AlternateLocation",
                    "extendedInfo": {
                        "recoveryDestination": destination,
                        "sourceRecoverPoint": {"recoveryPointID": rp.id, "recoveryPointTime": from_timestamp(rp.time)},
                    },
                },
            )  # fmt: skip
            op = await operations.start(
                tx, now=self.svc.now(), kind=OperationKind.VALIDATE if validate else OperationKind.BACKUP, scope=scope,
                resource_key=row.key, resource_path=resource.id or "", api_version=version,
                request_hash=fingerprint("restore", validate, target, rp.id),
            )  # fmt: skip
            if validate:
                check = payloads.ValidateRestore(
                    operation=op.id, job=job_id, instance=row.key, rp=rp.id, target=target
                )
                await payloads.enqueue(tx, check, now=self.svc.real_now())
            else:
                restore = payloads.Restore(job=job_id, instance=row.key, rp=rp.id, target=target)
                await payloads.enqueue(tx, restore, now=self.svc.real_now())
                await operations.finish(
                    tx, op.id, now=self.svc.now(), status=OperationStatus.SUCCEEDED,
                    result={"jobId": job_id, "objectType": "OperationJobExtendedInfo"}, op=op,
                )  # fmt: skip
            return op.id, scope

        op_id, scope = await self.svc.store.transact(write)
        self.svc.wake_worker()
        return accepted(call, scope, op_id, version, self.svc.settings.retry_after)

    async def drill(self, call: Call) -> Reply:
        """dpvault's own ``POST /dpvault/restoreDrills {"recoveryPointId": "<recovery point ARM id>"}``:
        drill-restore one recovery point now; 202 with the drill's job id."""
        request = decode(await call.json_body() or b"", DrillRequest)
        parts = request.recoveryPointId.strip("/").split("/")
        literals = [p.lower() for p in parts[0::2]] if len(parts) == 12 else []
        expected = [
            "subscriptions",
            "resourcegroups",
            "providers",
            "backupvaults",
            "backupinstances",
            "recoverypoints",
        ]
        if literals != expected or parts[5].lower() != "microsoft.dataprotection":
            raise errors.bad_request(
                "recoveryPointId must be a recovery point id: /subscriptions/…/resourceGroups/…/providers/"
                "Microsoft.DataProtection/backupVaults/…/backupInstances/…/recoveryPoints/….",
                target="recoveryPointId",
            )
        sub, rg, vault, name, rp_id = parts[1], parts[3], parts[7], parts[9], parts[11]
        assert self.svc.authorize is not None and call.principal is not None
        await self.svc.authorize(call.principal, ids.check_subscription(sub))

        async def write(tx: Tx) -> str:
            vault_row = await require_vault(tx, ids.check_subscription(sub), rg, vault)
            row = await tx.resource(instance_key(vault_row.key, name))
            rp = await tx.recovery_point(rp_id.lower())
            if row is None or rp is None or rp.instance_key != row.key or rp.state != "available":
                raise errors.resource_not_found(
                    f"Microsoft.DataProtection/backupVaults/{vault}/backupInstances/{name}/recoveryPoints/{rp_id}",
                    rg,
                )
            return await self.protection.drills.start(tx, row, rp.id)

        job_id = await self.svc.store.transact(write)
        self.svc.wake_worker()
        return Reply.json(202, {"jobId": job_id})

    async def restore(self, call: Call) -> Reply:
        request = decode(await call.json_body() or b"", RestoreRequest)  # type: ignore[arg-type]
        return await self._start(call, request, validate=False)

    async def validate_restore(self, call: Call) -> Reply:
        wrapper = decode(await call.json_body() or b"", ValidateRestoreRequestObject)
        return await self._start(call, wrapper.restoreRequestObject, validate=True)

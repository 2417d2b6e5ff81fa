"""Jobs that finish backup-instance operations, run by the durable worker.

Each job is idempotent: it re-reads the operation and does nothing once it is terminal, so a job
re-claimed after a crash (its lease expired) completes the work exactly once. Slow work (deep
validation, deleting backup data) happens outside transactions; each transaction re-checks state.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any

import msgspec
import structlog

from dpvault.clock import from_timestamp
from dpvault.errors import UserError, internal_error
from dpvault.jobs.worker import Claimed
from dpvault.model import backup_jobs, operations, payloads
from dpvault.model.instances import rules
from dpvault.model.instances.schema import (
    BackupInstance,
    BackupInstanceResource,
    DeletionInfo,
    UserFacingError,
)
from dpvault.protection.service import Protection, not_backed_up
from dpvault.resources.operations import lifecycle_result
from dpvault.services import Services
from dpvault.store import OperationRow, ResourceRow, Tx
from dpvault.types import Kind, OperationStatus, ProtectionState, ProvisioningState

log = structlog.get_logger("dpvault.instances")
GC_WAIT = 30.0  # how long an instance delete waits for another collection of its vault to end


@dataclass
class _Batch:
    """Rows ``configure_many`` read for all its jobs at once, and the policies read so far."""

    operations: dict[str, OperationRow]
    resources: dict[str, ResourceRow]
    policies: dict[str, ResourceRow | None] = field(default_factory=dict)


class InstanceJobs:
    def __init__(self, svc: Services, protection: Protection) -> None:
        self.svc = svc
        self.protection = protection

    async def _complete(self, tx: Tx, claimed: Claimed[Any]) -> None:
        """Mark this job done in the handler's own transaction (one commit instead of two)."""
        await tx.finish_job(claimed.id, claimed.worker, now=self.svc.real_now(), state="done", error=None)

    async def _deep_validation(self, bi: BackupInstance, subscription: str) -> UserError | None:
        try:
            await self.protection.validate(bi, subscription)
        except UserError as exc:
            return exc
        return None

    # -- configure ---------------------------------------------------------------------------

    async def configure(self, claimed: Claimed[payloads.ConfigureInstance]) -> bool:
        """Provision a created or updated instance: validate (deeply if asked), start its schedule."""
        p = claimed.payload
        if self.svc.settings.provisioning_delay > 0:
            await asyncio.sleep(self.svc.settings.provisioning_delay)
        failure = None
        if p.deep:  # slow work (a database connection) happens outside the transaction
            async with self.svc.store.read() as tx:
                op = await tx.operation(p.operation)
                row = await tx.resource(op.resource_key) if op else None
            if op is None or op.terminal:
                return False
            if row is not None:
                failure = await self._deep_validation(
                    rules.decode_instance(row.body).properties, row.subscription
                )
        due: list[float | None] = []
        done = await self.svc.store.transact(lambda tx: self._settle(tx, claimed, failure, due))
        self._wake_scheduler(due)
        return done

    async def configure_many(self, jobs: list[Claimed[payloads.ConfigureInstance]]) -> list[Claimed[Any]]:
        """Settle the shallow configurations among ``jobs`` in one transaction and mark their jobs
        done in it; return the jobs left for ``configure`` one by one (deep validations, or all of
        them if the shared transaction fails, so one bad job cannot fail the others). Under a burst of
        PUTs this saves a transaction per instance and reads operations, instances and the policy once
        per batch (bench P1, P5)."""
        if self.svc.settings.provisioning_delay > 0:
            return list(jobs)
        shallow = [j for j in jobs if not j.payload.deep]
        if len(shallow) < 2:
            return list(jobs)
        due: list[float | None] = []

        async def write(tx: Tx) -> None:
            op_ids = [j.payload.operation for j in shallow]
            # Instances before their operations (PostgreSQL); PUT and DELETE lock the instance and
            # read its operation unlocked (Tx.operation), so neither order deadlocks with them.
            ops = await tx.operations_many(op_ids, lock=False)
            instances = await tx.resources_many([op.resource_key for op in ops.values() if not op.terminal])
            if tx.locks_rows:
                ops = await tx.operations_many(op_ids)
            batch = _Batch(ops, instances)
            for job in shallow:
                await self._settle(tx, job, None, due, batch=batch)
            await tx.finish_jobs([j.id for j in shallow], shallow[0].worker, now=self.svc.real_now())

        try:
            await self.svc.store.transact(write)
        except Exception as exc:  # the caller runs them one by one, where each fails or succeeds alone
            log.warning("configuring instances together failed", count=len(shallow), error=type(exc).__name__)
            return list(jobs)
        log.debug("instances configured together", count=len(shallow))
        self._wake_scheduler(due)
        return [j for j in jobs if j.payload.deep]

    def _wake_scheduler(self, due: list[float | None]) -> None:
        soonest = min((d for d in due if d is not None), default=None)
        if soonest is not None:
            self.svc.wake_scheduler(soonest)  # only if sooner than the scheduler looks anyway

    async def _settle(
        self,
        tx: Tx,
        claimed: Claimed[payloads.ConfigureInstance],
        failure: UserError | None,
        due: list[float | None],
        *,
        batch: _Batch | None = None,
    ) -> bool:
        """The configuration's outcome, in the caller's transaction. True once the job is marked done
        here (a ``batch`` marks its jobs done itself)."""
        p = claimed.payload
        op = batch.operations.get(p.operation) if batch else await tx.operation(p.operation)
        if op is None or op.terminal:
            return False
        row = batch.resources.get(op.resource_key) if batch else await tx.resource(op.resource_key)
        now = self.svc.now()
        if row is None or row.active_operation != p.operation:
            superseded = operations.superseded("The backup instance changed while it was being configured.")
            await operations.finish(
                tx, p.operation, op=op, now=now, status=OperationStatus.FAILED, error=superseded
            )
            return False
        instance = rules.decode_instance(row.body)
        if failure is not None:
            error = UserFacingError(**failure.user_facing())
            resource = rules.with_state(
                instance, provisioning=ProvisioningState.FAILED.value,
                protection=ProtectionState.CONFIGURING_FAILED, error=error,
            )  # fmt: skip
            await tx.update_resource(
                row.key, body=msgspec.json.encode(resource), state=ProvisioningState.FAILED.value,
                active_operation=None, updated_at=now,
            )  # fmt: skip
            await operations.finish(
                tx, p.operation, op=op, now=now, status=OperationStatus.FAILED, error=failure.to_arm()
            )
            if p.job:
                await backup_jobs.finish(
                    tx, p.job, now=now, status=backup_jobs.FAILED, error=failure.user_facing()
                )
            return False
        backed_up = self.protection.engine_for(instance.properties) is not None
        resource = rules.with_state(
            instance, provisioning=ProvisioningState.SUCCEEDED.value, protection=ProtectionState.CONFIGURED,
            error=None if backed_up else _not_backed_up(instance),
        )  # fmt: skip
        await tx.update_resource(
            row.key, body=msgspec.json.encode(resource), state=ProvisioningState.SUCCEEDED.value,
            active_operation=None, updated_at=now,
        )  # fmt: skip
        policy_key = instance.properties.policyInfo.policyId.lower()
        policies = batch.policies if batch else {}
        if policy_key not in policies:
            policies[policy_key] = await tx.resource(policy_key, lock=False)
        policy_row = policies[policy_key]
        if policy_row is not None:
            due.append(await self.protection.protect(tx, row, policy_row, backed_up=backed_up))
        await operations.finish(tx, p.operation, now=now, status=OperationStatus.SUCCEEDED, op=op)
        if p.job:
            await backup_jobs.finish(tx, p.job, now=now, status=backup_jobs.COMPLETED)
        if batch is None:
            await self._complete(tx, claimed)
        return True

    # -- delete ------------------------------------------------------------------------------

    async def delete(self, claimed: Claimed[payloads.DeleteInstance]) -> None:
        """Stop the schedule, delete the recovery points (data, then index), then the instance; or,
        in a vault with soft delete, keep both as a deleted instance (``soft_delete``)."""
        op_id = claimed.payload.operation
        if claimed.payload.softDeleteDays is not None:
            await self.svc.store.transact(
                lambda tx: soft_delete(tx, self.svc, self.protection, claimed.payload)
            )
            return
        points = self.protection.points

        async def begin(tx: Tx) -> list[Any] | None:
            op = await tx.operation(op_id)
            if op is None or op.terminal:
                return None
            await tx.delete_protected_item(op.resource_key)
            found = await tx.recovery_points_of(op.resource_key, states=("available", "deleting"))
            await points.retire(tx, found)
            return found

        found = await self.svc.store.transact(begin)
        if found is None:
            return
        await points.delete_data(found)

        await self.svc.store.transact(lambda tx: points.forget(tx, found))
        if found:  # the packs only these points used go before the operation ends (or at the next
            # sweep, if a backup of the vault is writing)
            await points.collect_garbage(sorted({rp.vault_key for rp in found}), wait=GC_WAIT)

        async def end(tx: Tx) -> None:
            op = await tx.operation(op_id)
            if op is None or op.terminal:
                return
            row = await tx.resource(op.resource_key)
            if row is not None and row.active_operation == op_id:
                await tx.delete_resource(row.key)
            await operations.finish(tx, op_id, op=op, now=self.svc.now(), status=OperationStatus.SUCCEEDED)

        await self.svc.store.transact(end)

    # -- validateForBackup -------------------------------------------------------------------

    async def validate(self, claimed: Claimed[payloads.ValidateForBackup]) -> None:
        """validateForBackup: the shallow checks ran with the request; the deep ones run here."""
        p = claimed.payload
        subscription = p.subscription
        if subscription is None:  # enqueued by a version that did not record it
            async with self.svc.store.read() as tx:
                op = await tx.operation(p.operation)
            if op is None:
                return
            subscription = op.subscription
        failure = await self._deep_validation(p.backupInstance, subscription)

        async def write(tx: Tx) -> None:
            now = self.svc.now()
            if failure is not None:
                await operations.finish(
                    tx, p.operation, now=now, status=OperationStatus.FAILED, error=failure.to_arm()
                )
                if p.job:
                    await backup_jobs.finish(
                        tx, p.job, now=now, status=backup_jobs.FAILED, error=failure.user_facing()
                    )
                return
            result: dict[str, Any] = {"objectType": "OperationJobExtendedInfo"}
            if p.job:
                result["jobId"] = p.job
                await backup_jobs.finish(tx, p.job, now=now, status=backup_jobs.COMPLETED)
            await operations.finish(tx, p.operation, now=now, status=OperationStatus.SUCCEEDED, result=result)

        await self.svc.store.transact(write)

    # -- sync --------------------------------------------------------------------------------

    async def sync(self, claimed: Claimed[payloads.SyncInstance]) -> None:
        """Re-read the policy (its current version) and re-run the deep checks."""
        op_id = claimed.payload.operation
        async with self.svc.store.read() as tx:
            op = await tx.operation(op_id)
            row = await tx.resource(op.resource_key) if op else None
        if op is None or op.terminal:
            return
        # A deleted instance is not validated; the transaction below then ends the operation.
        failure = (
            await self._deep_validation(rules.decode_instance(row.body).properties, row.subscription)
            if row
            else None
        )

        async def write(tx: Tx) -> None:
            op = await tx.operation(op_id)
            if op is None or op.terminal:
                return
            row = await tx.resource(op.resource_key)
            now = self.svc.now()
            if row is None or row.active_operation != op_id:
                await operations.finish(tx, op_id, op=op, now=now, status=OperationStatus.FAILED,
                                        error=operations.superseded("The backup instance changed."))  # fmt: skip
                return
            resource = rules.decode_instance(row.body)
            props = resource.properties
            policy_row = await tx.resource(props.policyInfo.policyId.lower())
            if policy_row is not None:
                info = msgspec.structs.replace(props.policyInfo, policyVersion=f"{policy_row.revision}.0")
                resource = msgspec.structs.replace(
                    resource, properties=msgspec.structs.replace(props, policyInfo=info)
                )
            state = resource.properties.currentProtectionState
            backed_up = self.protection.engine_for(resource.properties) is not None
            if failure is not None:
                error = UserFacingError(**failure.user_facing())
                resource = rules.with_state(resource, provisioning=ProvisioningState.SUCCEEDED.value,
                                            protection=ProtectionState.CONFIGURING_FAILED, error=error)  # fmt: skip
            elif (
                state == ProtectionState.CONFIGURING_FAILED.value or state == ProtectionState.CONFIGURED.value
            ):
                resource = rules.with_state(resource, provisioning=ProvisioningState.SUCCEEDED.value,
                                            protection=ProtectionState.CONFIGURED,
                                            error=None if backed_up else _not_backed_up(resource))  # fmt: skip
                if policy_row is not None:
                    await self.protection.protect(tx, row, policy_row, backed_up=backed_up)
            await tx.update_resource(row.key, body=msgspec.json.encode(resource), active_operation=None,
                                     state=ProvisioningState.SUCCEEDED.value, updated_at=now)  # fmt: skip
            if failure is not None:
                await operations.finish(
                    tx, op_id, op=op, now=now, status=OperationStatus.FAILED, error=failure.to_arm()
                )
            else:
                await operations.finish(
                    tx,
                    op_id,
                    op=op,
                    now=now,
                    status=OperationStatus.SUCCEEDED,
                    result=lifecycle_result(op.api_version),
                )

        await self.svc.store.transact(write)
        self.svc.wake_scheduler()

    # -- giving up ---------------------------------------------------------------------------

    async def give_up(self, claimed: Claimed[Any], reason: str) -> None:
        """A job ran out of attempts: its operation fails, and the instance shows why."""
        op_id = claimed.payload.operation
        message = f"The operation could not be completed: {reason}"
        job_id = getattr(claimed.payload, "job", None)

        async def write(tx: Tx) -> None:
            op = await tx.operation(op_id)
            if op is None or op.terminal:
                return
            now = self.svc.now()
            row = await tx.resource(op.resource_key)
            if row is not None and row.active_operation == op_id and row.kind == "backupInstances":
                error = UserFacingError(
                    code="InternalError", message=message, isRetryable=True, isUserError=False
                )
                resource = rules.with_state(
                    rules.decode_instance(row.body),
                    provisioning=ProvisioningState.FAILED.value,
                    protection=None if op.kind == "delete" else ProtectionState.CONFIGURING_FAILED,
                    error=None if op.kind == "delete" else error,
                )
                await tx.update_resource(
                    row.key, body=msgspec.json.encode(resource), state=ProvisioningState.FAILED.value,
                    active_operation=None, updated_at=now,
                )  # fmt: skip
            await operations.finish(
                tx, op_id, op=op, now=now, status=OperationStatus.FAILED, error=internal_error(message)
            )
            if job_id:
                await backup_jobs.finish(tx, job_id, now=now, status=backup_jobs.FAILED,
                                         error={"code": "InternalError", "message": message})  # fmt: skip

        await self.svc.store.transact(write)


async def soft_delete(
    tx: Tx, svc: Services, protection: Protection, payload: payloads.DeleteInstance
) -> None:
    """The instance becomes its deleted record (DeletedBackupInstance, SoftDeleted) in one
    transaction: its recovery points kept under the record (retention paused, no backups), purged
    after the vault's retention days (``protection/softdelete.py``) unless undeleted first."""
    op = await tx.operation(payload.operation)
    if op is None or op.terminal:
        return
    row = await tx.resource(op.resource_key)
    now = svc.now()
    if row is None or row.active_operation != op.id:
        superseded = operations.superseded("The backup instance changed while it was being deleted.")
        await operations.finish(tx, op.id, op=op, now=now, status=OperationStatus.FAILED, error=superseded)
        return
    resource = rules.decode_instance(row.body)
    deleted_key = rules.deleted_instance_key(row.parent_key, row.name)
    purge_at = now + (payload.softDeleteDays or 0) * 86400.0
    activity = str(uuid.uuid4())
    stamp = from_timestamp(now)
    info = DeletionInfo(
        deletionTime=stamp,
        billingEndDate=stamp,
        scheduledPurgeTime=from_timestamp(purge_at),
        deleteActivityID=activity,
    )
    vault_id = (resource.id or "").rsplit("/backupInstances/", 1)[0]
    record = rules.soft_deleted(resource, f"{vault_id}/deletedBackupInstances/{row.name}", info)
    await tx.insert_resource(
        key=deleted_key, kind=Kind.DELETED_INSTANCE.value, subscription=row.subscription, rg_key=row.rg_key,
        parent_key=row.parent_key, name=row.name, body=msgspec.json.encode(record), state=ProvisioningState.SUCCEEDED.value,
        active_operation=None, revision=1, created_at=now, updated_at=now,
    )  # fmt: skip
    await protection.soft_deletes.hold(
        tx, instance_key=row.key, held_key=deleted_key, vault_key=row.parent_key,
        policy_key=resource.properties.policyInfo.policyId.lower(),
    )  # fmt: skip
    await tx.insert_soft_deletion(
        key=deleted_key, kind=Kind.INSTANCE.value, original_key=row.key, vault_key=row.parent_key,
        subscription=row.subscription, deleted_at=now, purge_at=purge_at, activity_id=activity, original=row.body,
    )  # fmt: skip
    await tx.delete_resource(row.key)
    await operations.finish(tx, op.id, op=op, now=now, status=OperationStatus.SUCCEEDED)
    svc.wake_scheduler(purge_at)


def _not_backed_up(instance: BackupInstanceResource) -> UserFacingError:
    return UserFacingError(**not_backed_up(instance.properties.dataSourceInfo.datasourceType).user_facing())

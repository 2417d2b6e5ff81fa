"""Jobs that finish backup-instance operations, run by the durable worker.

Each job is idempotent: it re-reads the operation and does nothing once it is terminal, so a job
re-claimed after a crash (its lease expired) completes the work exactly once. Slow work (deep
validation, deleting backup data) happens outside transactions; each transaction re-checks state.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import msgspec
import structlog

from dpvault.protection.errors import UserError
from dpvault.resources import operations
from dpvault.resources.instances import rules
from dpvault.resources.instances.schema import BackupInstance, UserFacingError
from dpvault.resources.jobs import records
from dpvault.services import Services
from dpvault.store import OperationRow, ResourceRow, Tx
from dpvault.types import OperationStatus, ProtectionState, ProvisioningState

log = structlog.get_logger("dpvault.instances")

JOB_CONFIGURE = "instance.configure"
JOB_DELETE = "instance.delete"
JOB_VALIDATE = "instance.validate"
JOB_SYNC = "instance.sync"


async def complete(tx: Tx, svc: Services, payload: dict[str, Any]) -> None:
    """Mark this job done in the handler's own transaction (one commit instead of two)."""
    if "_job" in payload:
        await tx.finish_job(payload["_job"], payload["_worker"], now=svc.real_now(), state="done", error=None)


def _operation_error(exc: UserError) -> dict[str, Any]:
    return {"code": exc.code, "message": exc.message, "details": [exc.user_facing()], "httpStatus": 400}


async def _deep_validation(svc: Services, bi: BackupInstance, subscription: str) -> UserError | None:
    if svc.protection is None:
        return None
    try:
        await svc.protection.validate(bi, subscription)
    except UserError as exc:
        return exc
    return None


async def configure(svc: Services, payload: dict[str, Any]) -> bool:
    """Provision a created or updated instance: validate (deeply if asked), start its schedule."""
    op_id = payload["operation"]
    if svc.settings.provisioning_delay > 0:
        await asyncio.sleep(svc.settings.provisioning_delay)
    failure = None
    if payload.get("deep"):  # slow work (a database connection) happens outside the transaction
        async with svc.store.read() as tx:
            op = await tx.operation(op_id)
            row = await tx.resource(op.resource_key) if op else None
        if op is None or op.terminal:
            return False
        if row is not None:
            failure = await _deep_validation(
                svc, rules.decode_instance(row.body).properties, row.subscription
            )
    due: list[float | None] = []
    done = await svc.store.transact(lambda tx: _settle(tx, svc, payload, failure, due))
    _wake_scheduler(svc, due)
    return done


async def configure_many(svc: Services, payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Settle the shallow configurations among ``payloads`` in one transaction and mark their jobs
    done in it; return the payloads left for ``configure`` one by one (deep validations, or all of
    them if the shared transaction fails, so one bad job cannot fail the others). Under a burst of
    PUTs this saves a transaction per instance and reads operations, instances and the policy once
    per batch (bench P1, P5)."""
    if svc.settings.provisioning_delay > 0:
        return payloads
    shallow = [p for p in payloads if not p.get("deep")]
    if len(shallow) < 2:
        return payloads
    due: list[float | None] = []

    async def write(tx: Tx) -> None:
        op_ids = [p["operation"] for p in shallow]
        # Instances before their operations, the order PUT and DELETE lock them in (PostgreSQL):
        # the other order could deadlock with a PUT on one of them.
        ops = await tx.operations_many(op_ids, lock=False)
        instances = await tx.resources_many([op.resource_key for op in ops.values() if not op.terminal])
        if tx.locks_rows:
            ops = await tx.operations_many(op_ids)
        batch = _Batch(ops, instances)
        for payload in shallow:
            await _settle(tx, svc, payload, None, due, batch=batch)
        await tx.finish_jobs([p["_job"] for p in shallow], shallow[0]["_worker"], now=svc.real_now())

    try:
        await svc.store.transact(write)
    except Exception as exc:  # the caller runs them one by one, where each fails or succeeds alone
        log.warning("configuring instances together failed", count=len(shallow), error=type(exc).__name__)
        return payloads
    log.debug("instances configured together", count=len(shallow))
    _wake_scheduler(svc, due)
    return [p for p in payloads if p.get("deep")]


@dataclass
class _Batch:
    """Rows ``configure_many`` read for all its jobs at once, and the policies read so far."""

    operations: dict[str, OperationRow]
    resources: dict[str, ResourceRow]
    policies: dict[str, ResourceRow | None] = field(default_factory=dict)


def _wake_scheduler(svc: Services, due: list[float | None]) -> None:
    soonest = min((d for d in due if d is not None), default=None)
    if soonest is not None:
        svc.wake_scheduler(soonest)  # only if sooner than the scheduler looks anyway


async def _settle(
    tx: Tx,
    svc: Services,
    payload: dict[str, Any],
    failure: UserError | None,
    due: list[float | None],
    *,
    batch: _Batch | None = None,
) -> bool:
    """The configuration's outcome, in the caller's transaction. True once the job is marked done
    here (a ``batch`` marks its jobs done itself)."""
    op_id = payload["operation"]
    job_id = payload.get("job")
    op = batch.operations.get(op_id) if batch else await tx.operation(op_id)
    if op is None or op.terminal:
        return False
    row = batch.resources.get(op.resource_key) if batch else await tx.resource(op.resource_key)
    now = svc.now()
    if row is None or row.active_operation != op_id:
        await operations.finish(
            tx, op_id, op=op, now=now, status=OperationStatus.FAILED,
            error={"code": "OperationSuperseded", "message": "The backup instance changed while it was being configured."},
        )  # fmt: skip
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
            tx, op_id, op=op, now=now, status=OperationStatus.FAILED, error=_operation_error(failure)
        )
        if job_id:
            await records.finish(tx, job_id, now=now, status=records.FAILED, error=failure.user_facing())
        return False
    resource = rules.with_state(
        instance, provisioning=ProvisioningState.SUCCEEDED.value, protection=ProtectionState.CONFIGURED
    )
    await tx.update_resource(
        row.key, body=msgspec.json.encode(resource), state=ProvisioningState.SUCCEEDED.value,
        active_operation=None, updated_at=now,
    )  # fmt: skip
    if svc.protection is not None:
        policy_key = instance.properties.policyInfo.policyId.lower()
        policies = batch.policies if batch else {}
        if policy_key not in policies:
            policies[policy_key] = await tx.resource(policy_key, lock=False)
        policy_row = policies[policy_key]
        if policy_row is not None:
            due.append(await svc.protection.protect(tx, row, policy_row))
    await operations.finish(tx, op_id, now=now, status=OperationStatus.SUCCEEDED, op=op)
    if job_id:
        await records.finish(tx, job_id, now=now, status=records.COMPLETED)
    if batch is None:
        await complete(tx, svc, payload)
    return "_job" in payload


async def delete(svc: Services, payload: dict[str, Any]) -> None:
    """Stop the schedule, delete the recovery points (data, then index), then the instance."""
    op_id = payload["operation"]

    async def begin(tx: Tx) -> list[Any] | None:
        op = await tx.operation(op_id)
        if op is None or op.terminal:
            return None
        await tx.delete_protected_item(op.resource_key)
        points = await tx.recovery_points_of(op.resource_key, states=("available", "deleting"))
        for rp in points:
            await tx.update_recovery_point(rp.id, state="deleting")
        return points

    points = await svc.store.transact(begin)
    if points is None:
        return
    if points and svc.protection is not None:
        from dpvault.protection.retention import delete_objects

        await delete_objects(svc.protection.datastore, points)

    async def end(tx: Tx) -> None:
        op = await tx.operation(op_id)
        if op is None or op.terminal:
            return
        for rp in points:
            await tx.delete_recovery_point(rp.id)
        row = await tx.resource(op.resource_key)
        if row is not None and row.active_operation == op_id:
            await tx.delete_resource(row.key)
        await operations.finish(tx, op_id, op=op, now=svc.now(), status=OperationStatus.SUCCEEDED)

    await svc.store.transact(end)


async def validate(svc: Services, payload: dict[str, Any]) -> None:
    """validateForBackup: the shallow checks ran with the request; the deep ones run here."""
    op_id = payload["operation"]
    job_id = payload.get("job")
    bi = msgspec.convert(payload["backupInstance"], BackupInstance)
    subscription = payload.get("subscription")
    if subscription is None:  # enqueued by a version that did not record it
        async with svc.store.read() as tx:
            op = await tx.operation(op_id)
        if op is None:
            return
        subscription = op.subscription
    failure = await _deep_validation(svc, bi, subscription)

    async def write(tx: Tx) -> None:
        now = svc.now()
        if failure is not None:
            await operations.finish(
                tx, op_id, now=now, status=OperationStatus.FAILED, error=_operation_error(failure)
            )
            if job_id:
                await records.finish(tx, job_id, now=now, status=records.FAILED, error=failure.user_facing())
            return
        result: dict[str, Any] = {"objectType": "OperationJobExtendedInfo"}
        if job_id:
            result["jobId"] = job_id
            await records.finish(tx, job_id, now=now, status=records.COMPLETED)
        await operations.finish(tx, op_id, now=now, status=OperationStatus.SUCCEEDED, result=result)

    await svc.store.transact(write)


async def sync(svc: Services, payload: dict[str, Any]) -> None:
    """Re-read the policy (its current version) and re-run the deep checks."""
    op_id = payload["operation"]
    async with svc.store.read() as tx:
        op = await tx.operation(op_id)
        row = await tx.resource(op.resource_key) if op else None
    if op is None or op.terminal:
        return
    # A deleted instance is not validated; the transaction below then ends the operation.
    failure = (
        await _deep_validation(svc, rules.decode_instance(row.body).properties, row.subscription)
        if row
        else None
    )

    async def write(tx: Tx) -> None:
        op = await tx.operation(op_id)
        if op is None or op.terminal:
            return
        row = await tx.resource(op.resource_key)
        now = svc.now()
        if row is None or row.active_operation != op_id:
            await operations.finish(tx, op_id, op=op, now=now, status=OperationStatus.FAILED,
                                    error={"code": "OperationSuperseded", "message": "The backup instance changed."})  # fmt: skip
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
        if failure is not None:
            error = UserFacingError(**failure.user_facing())
            resource = rules.with_state(resource, provisioning=ProvisioningState.SUCCEEDED.value,
                                        protection=ProtectionState.CONFIGURING_FAILED, error=error)  # fmt: skip
        elif state == ProtectionState.CONFIGURING_FAILED.value or state == ProtectionState.CONFIGURED.value:
            resource = rules.with_state(resource, provisioning=ProvisioningState.SUCCEEDED.value,
                                        protection=ProtectionState.CONFIGURED)  # fmt: skip
            if svc.protection is not None and policy_row is not None:
                await svc.protection.protect(tx, row, policy_row)
        await tx.update_resource(row.key, body=msgspec.json.encode(resource), active_operation=None,
                                 state=ProvisioningState.SUCCEEDED.value, updated_at=now)  # fmt: skip
        if failure is not None:
            await operations.finish(
                tx, op_id, op=op, now=now, status=OperationStatus.FAILED, error=_operation_error(failure)
            )
        else:
            await operations.finish(tx, op_id, op=op, now=now, status=OperationStatus.SUCCEEDED, result={})

    await svc.store.transact(write)
    svc.wake_scheduler()


async def give_up(svc: Services, payload: dict[str, Any], reason: str) -> None:
    """A job ran out of attempts: its operation fails, and the instance shows why."""
    op_id = payload["operation"]
    message = f"The operation could not be completed: {reason}"

    async def write(tx: Tx) -> None:
        op = await tx.operation(op_id)
        if op is None or op.terminal:
            return
        now = svc.now()
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
            tx, op_id, op=op, now=now, status=OperationStatus.FAILED,
            error={"code": "InternalError", "message": message, "httpStatus": 500},
        )  # fmt: skip
        if payload.get("job"):
            await records.finish(tx, payload["job"], now=now, status=records.FAILED,
                                 error={"code": "InternalError", "message": message})  # fmt: skip

    await svc.store.transact(write)

"""Jobs that finish backup-instance operations, run by the durable worker.

Each job is idempotent: it re-reads the operation and does nothing once it is terminal, so a job
re-claimed after a crash (its lease expired) completes the work exactly once.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from dpvault.resources import operations
from dpvault.resources.instances import rules
from dpvault.resources.instances.schema import UserFacingError
from dpvault.services import Services
from dpvault.store import Tx
from dpvault.types import OperationStatus, ProtectionState, ProvisioningState

JOB_CONFIGURE = "instance.configure"
JOB_DELETE = "instance.delete"
JOB_VALIDATE = "instance.validate"


async def configure(svc: Services, payload: dict[str, Any]) -> None:
    """Provision a created or updated instance: provisioning Succeeded, protection configured."""
    op_id = payload["operation"]
    if svc.settings.provisioning_delay > 0:
        await asyncio.sleep(svc.settings.provisioning_delay)

    async def write(tx: Tx) -> None:
        op = await tx.operation(op_id)
        if op is None or op.terminal:
            return
        row = await tx.resource(op.resource_key)
        now = svc.now()
        if row is None or row.active_operation != op_id:
            await operations.finish(
                tx, op_id, now=now, status=OperationStatus.FAILED,
                error={"code": "OperationSuperseded", "message": "The backup instance changed while it was being configured."},
            )  # fmt: skip
            return
        resource = rules.with_state(
            rules.decode_instance(row.body),
            provisioning=ProvisioningState.SUCCEEDED.value,
            protection=ProtectionState.CONFIGURED,
        )
        await tx.update_resource(
            row.key, body=msgspec.json.encode(resource), state=ProvisioningState.SUCCEEDED.value,
            active_operation=None, updated_at=now,
        )  # fmt: skip
        await operations.finish(tx, op_id, now=now, status=OperationStatus.SUCCEEDED)

    await svc.store.transact(write)


async def delete(svc: Services, payload: dict[str, Any]) -> None:
    op_id = payload["operation"]

    async def write(tx: Tx) -> None:
        op = await tx.operation(op_id)
        if op is None or op.terminal:
            return
        row = await tx.resource(op.resource_key)
        if row is not None and row.active_operation == op_id:
            await tx.delete_resource(row.key)
        await operations.finish(tx, op_id, now=svc.now(), status=OperationStatus.SUCCEEDED)

    await svc.store.transact(write)


async def validate(svc: Services, payload: dict[str, Any]) -> None:
    """validateForBackup: the shallow checks ran with the request; the result is recorded here."""
    op_id = payload["operation"]

    async def write(tx: Tx) -> None:
        await operations.finish(
            tx, op_id, now=svc.now(), status=OperationStatus.SUCCEEDED,
            result={"objectType": "OperationJobExtendedInfo"},
        )  # fmt: skip

    await svc.store.transact(write)


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
            tx, op_id, now=now, status=OperationStatus.FAILED,
            error={"code": "InternalError", "message": message, "httpStatus": 500},
        )  # fmt: skip

    await svc.store.transact(write)

"""Jobs around restore: restore, validateRestore, and restore drills (run by the durable worker).

Each job re-reads its records and does nothing once they are terminal, so a re-claimed job is safe.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import structlog

from dpvault.clock import from_timestamp
from dpvault.protection.errors import UserError
from dpvault.protection.restore import Restorer
from dpvault.resources import operations
from dpvault.resources.instances import rules as instance_rules
from dpvault.resources.instances.schema import UserFacingError
from dpvault.resources.jobs import records
from dpvault.services import Services
from dpvault.store import Tx
from dpvault.types import OperationStatus

log = structlog.get_logger("dpvault.restore")

JOB_RESTORE = "protection.restore"
JOB_VALIDATE_RESTORE = "protection.validate_restore"
DRILL_CODES = (
    "UserErrorRestoreDrillMismatch",
    "UserErrorRestoreDrillFailed",
    "UserErrorRecoveryPointCorrupted",
)


class RestoreJobs:
    def __init__(self, svc: Services, restorer: Restorer) -> None:
        self.svc = svc
        self.restorer = restorer

    async def _load(self, payload: dict[str, Any]) -> tuple[Any, Any, Any]:
        async with self.svc.store.read() as tx:
            job = await tx.backup_job(payload["job"]) if payload.get("job") else None
            instance = await tx.resource(payload["instance"])
            rp = await tx.recovery_point(payload["rp"])
        return job, instance, rp

    async def _begin(self, payload: dict[str, Any], gone: str, action: str) -> tuple[Any, Any, Any] | None:
        """(job, instance, point) of a restore or drill job still to run; None when it is done, or
        when the point has gone (the job then ends Failed with ``gone``)."""
        job, instance, rp = await self._load(payload)
        if job is None or job.terminal:
            return None
        if instance is None or rp is None or rp.state != "available":
            await self._finish_job(job.id, records.FAILED, error=UserError(
                "UserErrorRecoveryPointNotFound", gone, action))  # fmt: skip
            return None
        return job, instance, rp

    async def _finish_job(
        self,
        job_id: str,
        status: str,
        *,
        error: UserError | None = None,
        details: dict[str, str] | None = None,
    ) -> None:
        async def write(tx: Tx) -> None:
            await records.finish(
                tx, job_id, now=self.svc.now(), status=status,
                error=error.user_facing() if error else None, details=details,
            )  # fmt: skip

        await self.svc.store.transact(write)

    # -- restore -----------------------------------------------------------------------------

    async def restore(self, payload: dict[str, Any]) -> None:
        begun = await self._begin(
            payload, "The recovery point no longer exists.", "Choose another recovery point."
        )
        if begun is None:
            return
        job, instance, rp = begun
        bi = instance_rules.decode_instance(instance.body).properties
        target = payload["target"]
        files = target["objectType"] == "RestoreFilesTargetInfo"
        params: dict[str, str] = {}
        try:
            if files:
                details = await self.restorer.to_files(rp, target, owner=job.id)
            else:
                params = await self.restorer.target_params(bi, target, instance.subscription)
                details = await self.restorer.to_database(rp, params, owner=job.id)
        except UserError as exc:
            log.info("restore failed", job=job.id, code=exc.code)
            await self._finish_job(job.id, records.FAILED, error=exc)
            return
        await self._finish_job(job.id, records.COMPLETED, details=details)
        # Only now that Completed is committed may the marks of "this job's work" go.
        try:
            if files:
                await asyncio.to_thread(self.restorer.release_files, target, job.id)
            else:
                await self.restorer.release_database(params, job.id)
        except Exception as exc:  # harmless leftovers: a hidden link, a database comment
            log.warning("restore marks not removed", job=job.id, error=type(exc).__name__)

    async def validate(self, payload: dict[str, Any]) -> None:
        op_id = payload["operation"]
        job, instance, rp = await self._load(payload)
        failure: UserError | None = None
        if instance is None or rp is None or rp.state != "available":
            failure = UserError(
                "UserErrorRecoveryPointNotFound",
                "The recovery point no longer exists.",
                "Choose another recovery point.",
            )
        else:
            try:
                await self.restorer.validate(
                    instance_rules.decode_instance(instance.body).properties,
                    rp,
                    payload["target"],
                    instance.subscription,
                )
            except UserError as exc:
                failure = exc

        async def write(tx: Tx) -> None:
            now = self.svc.now()
            if failure is not None:
                await operations.finish(tx, op_id, now=now, status=OperationStatus.FAILED, error={
                    "code": failure.code, "message": failure.message, "details": [failure.user_facing()], "httpStatus": 400})  # fmt: skip
                if job is not None:
                    await records.finish(
                        tx, job.id, now=now, status=records.FAILED, error=failure.user_facing()
                    )
                return
            result: dict[str, Any] = {"objectType": "OperationJobExtendedInfo"}
            if job is not None:
                result["jobId"] = job.id
                await records.finish(tx, job.id, now=now, status=records.COMPLETED)
            await operations.finish(tx, op_id, now=now, status=OperationStatus.SUCCEEDED, result=result)

        await self.svc.store.transact(write)

    # -- drills ------------------------------------------------------------------------------

    async def drill(self, payload: dict[str, Any]) -> None:
        begun = await self._begin(payload, "The recovery point was deleted before the drill ran.", "None.")
        if begun is None:
            return
        job, instance, rp = begun
        bi = instance_rules.decode_instance(instance.body).properties
        failure: UserError | None = None
        outcome: dict[str, Any] = {}
        try:
            outcome = await self.restorer.drill(bi, rp, instance.subscription, owner=job.id)
        except UserError as exc:
            failure = exc
        now = self.svc.now()

        async def write(tx: Tx) -> None:
            current = await tx.recovery_point(rp.id)
            if current is not None:
                details = msgspec.json.decode(current.details)
                details["drill"] = {
                    "status": "Failed" if failure else "Passed", "time": from_timestamp(now), "job": job.id,
                    **({"code": failure.code} if failure else {"tables": outcome.get("tables"), "rows": outcome.get("rows")}),
                }  # fmt: skip
                await tx.update_recovery_point(rp.id, details=msgspec.json.encode(details))
            row = await tx.resource(instance.key)
            if row is not None:
                resource = instance_rules.decode_instance(row.body)
                props = resource.properties
                error = current = props.protectionErrorDetails
                if failure is not None:
                    error = UserFacingError(**{**failure.user_facing(), "target": rp.id})
                elif current is not None and current.code in DRILL_CODES:
                    error = None  # a passing drill clears what a failed one reported
                if error is not current:
                    status = props.protectionStatus
                    if status is not None:
                        status = msgspec.structs.replace(status, errorDetails=error)
                    props = msgspec.structs.replace(
                        props, protectionErrorDetails=error, protectionStatus=status
                    )
                    await tx.update_resource(
                        row.key, body=msgspec.json.encode(msgspec.structs.replace(resource, properties=props))
                    )
            await records.finish(
                tx, job.id, now=now, status=records.FAILED if failure else records.COMPLETED,
                error=failure.user_facing() if failure else None,
                details={"DrillResult": "Failed" if failure else "Passed", "Tables": str(outcome.get("tables", "")),
                         "Rows": str(outcome.get("rows", "")), "FingerprintCompared": str(outcome.get("compared", False)).lower()},
            )  # fmt: skip

        await self.svc.store.transact(write)

    async def give_up(self, payload: dict[str, Any], reason: str) -> None:
        error = UserError("InternalError", f"The job could not be completed: {reason}", "Retry.")
        if payload.get("operation"):
            await self.svc.store.transact(lambda tx: operations.finish(
                tx, payload["operation"], now=self.svc.now(), status=OperationStatus.FAILED,
                error={"code": "InternalError", "message": error.message, "httpStatus": 500}))  # fmt: skip
        if payload.get("job"):
            await self._finish_job(payload["job"], records.FAILED, error=error)

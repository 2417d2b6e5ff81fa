"""Restore drills: prove a recovery point restores, row for row (beyond Azure).

A drill restores the point into a scratch target beside its source, fingerprints it and compares
the fingerprint with the one taken in the backup's own snapshot; the instance shows a failed drill
(``protectionErrorDetails``) until a later one passes. Opt-in: ``serve --restore-drills``, or the
tag ``dpvault-restore-drill=after-backup`` on the instance or its vault.
"""

from __future__ import annotations

from typing import Any

import msgspec
import structlog

from dpvault.clock import from_timestamp
from dpvault.engines.base import Fingerprint
from dpvault.engines.registry import Engines
from dpvault.errors import UserError
from dpvault.jobs.worker import Claimed
from dpvault.model import backup_jobs, payloads
from dpvault.model.instances.rules import decode_instance, vault_name_of, with_error
from dpvault.model.instances.schema import UserFacingError
from dpvault.protection.credentials import Credentials
from dpvault.protection.verified import check_point, corrupted
from dpvault.services import Services
from dpvault.store import ResourceRow, Tx
from dpvault.vault.points import PointDamagedError, RecoveryPoints

log = structlog.get_logger("dpvault.drills")

DRILL_TAG = "dpvault-restore-drill"
DRILL_CODES = (
    "UserErrorRestoreDrillMismatch",
    "UserErrorRestoreDrillFailed",
    "UserErrorRecoveryPointCorrupted",
)


def differences(expected: Fingerprint, actual: Fingerprint) -> list[str]:
    """Human-readable differences, empty when the fingerprints agree."""
    out = []
    for item in sorted(expected.keys() | actual.keys()):
        if item not in actual:
            out.append(f"{item} is missing")
        elif item not in expected:
            out.append(f"{item} is unexpected")
        elif expected[item] != actual[item]:
            (c1, _), (c2, _) = expected[item], actual[item]
            out.append(f"{item}: {c2} rows (expected {c1})" if c1 != c2 else f"{item}: content differs")
    return out


class Drills:
    def __init__(
        self, svc: Services, engines: Engines, credentials: Credentials, points: RecoveryPoints
    ) -> None:
        self.svc = svc
        self.engines = engines
        self.credentials = credentials
        self.points = points

    async def enabled(self, instance: ResourceRow) -> bool:
        """Opt-in: the server's setting, or the tag on the instance or its vault."""
        if self.svc.settings.restore_drills:
            return True
        async with self.svc.store.read() as tx:
            vault = await tx.resource(instance.parent_key)
        for row in (instance, vault):
            tags = (msgspec.json.decode(row.body).get("tags") or {}) if row else {}
            for key, value in tags.items():
                if key.lower() == DRILL_TAG and str(value).strip().lower() in (
                    "after-backup",
                    "afterbackup",
                    "true",
                    "on",
                ):
                    return True
        return False

    async def start(self, tx: Tx, instance: ResourceRow, rp_id: str) -> str:
        """Record and enqueue a restore drill of ``rp_id`` (in the caller's transaction)."""
        resource = decode_instance(instance.body)
        job_id = await backup_jobs.create(
            tx, now=self.svc.now(), subscription=instance.subscription, vault_key=instance.parent_key,
            vault_name=vault_name_of(resource.id or ""), instance_key=instance.key, instance_id=resource.id,
            instance=resource.properties, operation="RestoreDrill", category="Restore", user_triggered=False,
            details={"RecoveryPointId": rp_id}, recovery_point_id=rp_id,
        )  # fmt: skip
        payload = payloads.RestoreDrill(job=job_id, instance=instance.key, rp=rp_id)
        await payloads.enqueue(tx, payload, now=self.svc.real_now())
        return job_id

    async def run(self, claimed: Claimed[payloads.RestoreDrill]) -> None:
        p = claimed.payload
        async with self.svc.store.read() as tx:
            job = await tx.backup_job(p.job)
            instance = await tx.resource(p.instance)
            rp = await tx.recovery_point(p.rp)
        if job is None or job.terminal:
            return
        if instance is None or rp is None or rp.state != "available":
            gone = UserError(
                "UserErrorRecoveryPointNotFound",
                "The recovery point was deleted before the drill ran.",
                "None.",
            )
            await self._finish(job.id, backup_jobs.FAILED, error=gone.user_facing())
            return
        failure: UserError | None = None
        outcome: dict[str, Any] = {}
        try:
            outcome = await self._drill(instance, rp, owner=job.id)
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
                resource = decode_instance(row.body)
                error = shown = resource.properties.protectionErrorDetails
                if failure is not None:
                    error = UserFacingError(**{**failure.user_facing(), "target": rp.id})
                elif shown is not None and shown.code in DRILL_CODES:
                    error = None  # a passing drill clears what a failed one reported
                if error is not shown:
                    await tx.update_resource(row.key, body=msgspec.json.encode(with_error(resource, error)))
            await backup_jobs.finish(
                tx, job.id, now=now, status=backup_jobs.FAILED if failure else backup_jobs.COMPLETED,
                error=failure.user_facing() if failure else None,
                details={"DrillResult": "Failed" if failure else "Passed", "Tables": str(outcome.get("tables", "")),
                         "Rows": str(outcome.get("rows", "")), "FingerprintCompared": str(outcome.get("compared", False)).lower()},
            )  # fmt: skip

        await self.svc.store.transact(write)

    async def _drill(self, instance: ResourceRow, rp: Any, *, owner: str) -> dict[str, Any]:
        """Verify the point, restore it into a scratch target, compare fingerprints."""
        source = decode_instance(instance.body).properties
        engine = self.engines.for_type(source.dataSourceInfo.datasourceType)
        if engine is None:
            raise UserError(
                "UserErrorRestoreDrillFailed",
                f"dpvault has no engine for datasource type '{source.dataSourceInfo.datasourceType}'.",
                "None.",
            )
        expected = msgspec.json.decode(rp.details).get("fingerprint")
        await check_point(self.points, rp)  # local_copy checks the bytes
        params = await self.credentials.params(
            source.datasourceAuthCredentials, instance.subscription, engine
        )
        try:
            async with self.points.local_copy(rp) as archive:
                actual = await engine.drill(archive, params, owner=owner)
        except PointDamagedError:
            raise corrupted(rp.id) from None
        summary = {"tables": len(actual), "rows": sum(v[0] for v in actual.values())}
        if expected is None:
            return {**summary, "compared": False}
        diffs = differences(expected, actual)
        if diffs:
            raise UserError(
                "UserErrorRestoreDrillMismatch",
                f"The restore drill of recovery point '{rp.id}' does not match the backup: {'; '.join(diffs[:5])}",
                "Take a new backup and check the database and the vault store.",
            )
        return {**summary, "compared": True}

    async def _finish(self, job_id: str, status: str, *, error: dict[str, Any] | None = None) -> None:
        await self.svc.store.transact(
            lambda tx: backup_jobs.finish(tx, job_id, now=self.svc.now(), status=status, error=error)
        )

    async def give_up(self, claimed: Claimed[payloads.RestoreDrill], reason: str) -> None:
        error = UserError(
            "InternalError", f"The job could not be completed: {reason}", "Retry.", user_error=False
        )
        await self._finish(claimed.payload.job, backup_jobs.FAILED, error=error.user_facing())

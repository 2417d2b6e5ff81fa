"""The backup pipeline: one job per backup, exactly one recovery point per successful job.

1. intend: the point's row is recorded (``writing``) before any byte is written;
2. dump: the engine's stream goes straight into the vault datastore, hashed while streaming;
3. check: the stored object is read back, re-hashed, and handed to the engine's archive check;
4. manifest, then the row: one transaction makes the point ``available``, tags it, sets its
   expiry and completes the job. A point whose instance (or policy) went away meanwhile is removed.

A user error (credentials, network, the database) ends the job Failed at once, without retry; the
point's objects and row are removed either way (``RecoveryPoints.abandon``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import msgspec
import structlog

from dpvault.clock import from_timestamp
from dpvault.engines.base import Engine
from dpvault.engines.registry import Engines
from dpvault.errors import UserError
from dpvault.jobs.worker import Claimed
from dpvault.model import backup_jobs, payloads
from dpvault.model.instances.rules import decode_instance, subscription_of, vault_name_of
from dpvault.model.policies.rules import backup_rule, decode_policy
from dpvault.model.policies.schedule import zone
from dpvault.model.policies.schema import ScheduleBasedTriggerContext
from dpvault.model.policies.tagging import choose_tag, retention_for
from dpvault.protection.credentials import Credentials
from dpvault.protection.drills import Drills
from dpvault.services import Services
from dpvault.store import ResourceRow, Tx
from dpvault.types import ProvisioningState
from dpvault.vault import format as vault_format
from dpvault.vault.points import RecoveryPoints

log = structlog.get_logger("dpvault.protection")


def _unsupported(datasource_type: str | None) -> UserError:
    return UserError(
        "UserErrorDatasourceTypeNotSupported",
        f"dpvault has no backup engine for datasource type '{datasource_type}'.",
        "None: backups of this datasource type are not supported.",
    )


class Backups:
    def __init__(
        self,
        svc: Services,
        engines: Engines,
        credentials: Credentials,
        points: RecoveryPoints,
        drills: Drills,
    ) -> None:
        self.svc = svc
        self.engines = engines
        self.credentials = credentials
        self.points = points
        self.drills = drills

    async def start(
        self,
        tx: Tx,
        *,
        instance: ResourceRow,
        rule_name: str,
        tag: str | None,
        occurrence: float | None,
        user_triggered: bool,
    ) -> str | None:
        """Record a backup job and enqueue it; None if this occurrence was already enqueued."""
        now = self.svc.now()
        bi = decode_instance(instance.body)
        dedupe = f"backup:{instance.key}:{occurrence!r}" if occurrence is not None else None
        job_id = str(uuid.uuid4())
        payload = payloads.Backup(
            job=job_id, instance=instance.key, rule=rule_name, tag=tag, occurrence=occurrence
        )
        if not await payloads.enqueue(tx, payload, now=self.svc.real_now(), dedupe_key=dedupe):
            return None
        details = {"PolicyRuleName": rule_name}
        if tag:
            details["RetentionTag"] = tag
        if occurrence is not None:
            details["ScheduledTime"] = from_timestamp(occurrence)
        await backup_jobs.create(
            tx, now=now, subscription=subscription_of(bi, instance.subscription),
            vault_key=instance.parent_key, vault_name=vault_name_of(bi.id or ""), instance_key=instance.key,
            instance_id=bi.id, instance=bi.properties, operation="Backup", category="Backup",
            user_triggered=user_triggered, details=details, job_id=job_id, start_time=occurrence,
        )  # fmt: skip
        return job_id

    async def run(self, claimed: Claimed[payloads.Backup]) -> None:
        """The job: dump, check, publish, record. User errors end the job Failed (no retry)."""
        p = claimed.payload
        async with self.svc.store.read() as tx:
            job = await tx.backup_job(p.job)
            instance = await tx.resource(p.instance)
        # This attempt holds the job's lease: whatever earlier attempts wrote is dead.
        await self.points.abandon_job(p.job, p.instance)
        if job is None or job.terminal:
            return
        if instance is None:
            await self._fail(
                p.job,
                UserError("UserErrorBackupInstanceNotFound", "The backup instance was deleted.", "None."),
            )
            return
        bi = decode_instance(instance.body).properties
        engine = self.engines.for_type(bi.dataSourceInfo.datasourceType)
        if engine is None:
            await self._fail(p.job, _unsupported(bi.dataSourceInfo.datasourceType))
            return
        rp_id = str(uuid.uuid4())
        archive = vault_format.archive_key(instance.parent_key, instance.key, rp_id)
        await self.points.intend(
            rp_id=rp_id, instance=instance, archive=archive, job=p.job,
            taken_at=p.occurrence or job.start_time, now=self.svc.now(),
        )  # fmt: skip
        recorded = False
        try:
            try:
                drill = await self.drills.enabled(instance)
                params = await self.credentials.params(
                    bi.datasourceAuthCredentials, instance.subscription, engine
                )
                async with engine.dump(params, fingerprint=drill) as dump:
                    written = await self.points.datastore.put(archive, dump.chunks(), writer=p.job)
                    prints = dump.fingerprint
                size, sha, checked = await self._read_back(engine, archive)
                if (size, sha) != (written.size, written.sha256):
                    raise UserError("UserErrorBackupVerificationFailed", "The stored backup does not match what was written.",
                                    "Check the vault datastore's disk, then retry.", retryable=True)  # fmt: skip
                manifest = vault_format.Manifest(
                    format=vault_format.FORMAT, recoveryPointId=rp_id, instance=instance.key, sha256=sha, size=size,
                    engine=engine.archive_format, pgDumpVersion=engine.tool_version, tables=int(checked.get("tables", 0)),
                )  # fmt: skip
                await vault_format.write_manifest(self.points.datastore, archive, manifest, writer=p.job)
            except UserError as exc:
                await self._fail(p.job, exc)
                return
            recorded = await self._record(
                claimed, instance, engine, rp_id, archive, manifest, checked, prints, drill
            )
        finally:
            if not recorded:  # failed, deleted meanwhile, or interrupted: the point goes
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.points.abandon(rp_id, archive))
        await self.points.sweep(incomplete_only=True)

    async def _read_back(self, engine: Engine, key: str) -> tuple[int, str, dict[str, Any]]:
        """Re-read the stored object: its size and SHA-256, and the engine's check of it, in one pass."""
        digest = hashlib.sha256()
        size = 0

        async def chunks() -> AsyncIterator[bytes]:
            nonlocal size
            async for chunk in self.points.datastore.get(key):
                await asyncio.to_thread(digest.update, chunk)
                size += len(chunk)
                yield chunk

        checked = await engine.check(chunks())
        return size, digest.hexdigest(), checked

    async def _record(
        self,
        claimed: Claimed[payloads.Backup],
        instance: ResourceRow,
        engine: Engine,
        rp_id: str,
        archive: str,
        manifest: vault_format.Manifest,
        checked: dict[str, Any],
        prints: dict[str, list[Any]] | None,
        drill: bool,
    ) -> bool:
        p = claimed.payload

        async def write(tx: Tx) -> bool:
            job = await tx.backup_job(p.job)
            if job is None or job.terminal:
                return False
            current = await tx.resource(instance.key)
            policy_row = None
            if current is not None and current.state != ProvisioningState.DELETING:
                bi = decode_instance(current.body).properties
                policy_row = await tx.resource(bi.policyInfo.policyId.lower())
            if current is None or policy_row is None:
                # Deleted (or being deleted) while the dump ran: no point may outlive its instance.
                gone = UserError(
                    "UserErrorBackupInstanceNotFound",
                    "The backup instance or its policy was deleted while the backup ran.",
                    "None.",
                )
                await backup_jobs.finish(
                    tx, p.job, now=self.svc.now(), status=backup_jobs.FAILED, error=gone.user_facing()
                )
                return False
            policy = decode_policy(policy_row.body).properties
            rule = backup_rule(policy, p.rule)
            data_store = rule.dataStore.dataStoreType if rule else "VaultStore"
            # Times are kept to the microsecond, as they are written out (7 digits, the last one 0).
            when = round(p.occurrence or job.start_time, 6)
            tag = p.tag
            if not tag:
                trigger = (
                    rule.trigger if rule and isinstance(rule.trigger, ScheduleBasedTriggerContext) else None
                )
                tz = zone(trigger.schedule.timeZone) if trigger else None
                local = datetime.fromtimestamp(when, tz or UTC)
                earlier = [
                    datetime.fromtimestamp(rp.time, tz or UTC)
                    for rp in await tx.recovery_points_of(current.key)
                ]
                tag = (
                    choose_tag(trigger.taggingCriteria, local, earlier)
                    if trigger and trigger.taggingCriteria
                    else "Default"
                )
            keep = retention_for(policy, tag, data_store)
            expiry = None
            if keep is not None:
                expiry = (datetime.fromtimestamp(when, UTC) + keep[1]).timestamp()
            details: dict[str, Any] = {
                **checked, "pgDumpVersion": engine.tool_version, "objectKey": archive,
                "deleteAfter": keep[0] if keep else None,
            }  # fmt: skip
            if prints is not None:
                details["fingerprint"] = prints
            await self.points.commit(
                tx, rp_id, time=when, tag=tag, rule_name=rule.name if rule else "", policy_name=policy_row.name,
                policy_version=f"{policy_row.revision}.0", data_store=data_store, size=manifest.size,
                sha256=manifest.sha256, expiry=expiry, details=msgspec.json.encode(details),
            )  # fmt: skip
            await backup_jobs.finish(
                tx, p.job, now=self.svc.now(), status=backup_jobs.COMPLETED, size=manifest.size,
                details={"RetentionTag": tag, "RecoveryPointId": rp_id, "SHA256": manifest.sha256, "Worker": claimed.worker},
            )  # fmt: skip
            if drill:
                await self.drills.start(tx, current, rp_id)
            return True

        return await self.svc.store.transact(write)

    async def _fail(self, job_id: str, exc: UserError) -> None:
        log.info("backup job failed", job=job_id, code=exc.code)
        await self.svc.store.transact(
            lambda tx: backup_jobs.finish(
                tx, job_id, now=self.svc.now(), status=backup_jobs.FAILED, error=exc.user_facing()
            )
        )

    async def give_up(self, claimed: Claimed[payloads.Backup], reason: str) -> None:
        await self.points.abandon_job(claimed.payload.job, claimed.payload.instance)
        await self._fail(
            claimed.payload.job,
            UserError("InternalError", f"The backup could not be completed: {reason}", "Retry the backup."),
        )

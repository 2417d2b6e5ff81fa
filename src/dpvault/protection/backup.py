"""The backup pipeline: one job per backup, exactly one recovery point per successful job.

1. intend: the point's row is recorded (``writing``) before any byte is written;
2. dump: the engine's uncompressed stream is cut into chunks; those the vault does not hold yet are
   compressed, sealed and written in packs (vault format 2, ``dpvault.vault.packs``), and the same
   pass feeds the engine's archive check (``pg_restore --list``);
3. packs are indexed as they are written, then the sealed manifest is written;
4. one transaction makes the point ``available``, tags it, sets its expiry and completes the job.
   A point whose instance (or policy) went away meanwhile is removed.

A user error (credentials, network, the database) ends the job Failed at once, without retry; the
point's objects and row are removed either way (``RecoveryPoints.abandon``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import msgspec
import structlog

from dpvault.clock import from_timestamp
from dpvault.datastores.base import DatastoreError, DatastoreFullError
from dpvault.engines.base import Engine, SourceFile
from dpvault.engines.registry import Engines
from dpvault.errors import PermanentError, UserError
from dpvault.jobs.worker import Claimed
from dpvault.model import backup_jobs, immutability, payloads
from dpvault.model.instances.rules import decode_instance, subscription_of, vault_name_of
from dpvault.model.policies.rules import backup_rule, decode_policy
from dpvault.model.policies.schedule import zone
from dpvault.model.policies.schema import ScheduleBasedTriggerContext
from dpvault.model.policies.tagging import choose_tag, retention_for
from dpvault.protection.credentials import Credentials
from dpvault.protection.drills import Drills
from dpvault.protection.sources import Sources
from dpvault.services import Services
from dpvault.store import ResourceRow, Tx
from dpvault.types import ProvisioningState
from dpvault.vault import format as vault_format
from dpvault.vault.format import FileEntry, PointManifest
from dpvault.vault.keys import KekRef, KeyUnavailableError
from dpvault.vault.packs import PackWriter, Written
from dpvault.vault.points import RecoveryPoints, VaultBusyError

log = structlog.get_logger("dpvault.protection")


def _store_failure(exc: DatastoreError) -> UserError:
    """The vault store failed the backup for a reason retrying cannot fix: the service's fault."""
    if isinstance(exc, DatastoreFullError):
        return UserError(
            "UserErrorVaultStoreFull",
            f"The backup could not be stored: {exc}. Nothing of this backup was kept.",
            "Free space in the vault store named above (or raise its quota, or move it with serve --vault-store), "
            "then run the backup again.",
            user_error=False,
        )
    return UserError(
        "UserErrorVaultStoreUnavailable",
        f"The backup could not be stored: {exc}. Nothing of this backup was kept.",
        "Check that dpvault may write the vault store named above (serve --vault-store), then run the backup again.",
        user_error=False,
    )


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
        sources: Sources | None = None,
    ) -> None:
        """``sources``: source mappings, for engines whose datasources carry no credentials."""
        self.svc = svc
        self.engines = engines
        self.credentials = credentials
        self.points = points
        self.drills = drills
        self.sources = sources or Sources(credentials, None)

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
        """The job: dump into the vault (format 2), check, record. User errors end the job Failed
        (no retry); anything else is retried by the queue, the point's traces removed either way."""
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
        object_key = vault_format.point_manifest_key(instance.parent_key, instance.key, rp_id)
        try:
            await self.points.intend(
                rp_id=rp_id, instance=instance, archive=object_key, job=p.job,
                taken_at=p.occurrence or job.start_time, now=self.svc.now(),
            )  # fmt: skip
        except VaultBusyError as exc:
            await self._fail(p.job, UserError("UserErrorVaultBusy", f"The backup could not start: {exc}.",
                                              "Retry the backup.", retryable=True))  # fmt: skip
            return
        recorded = False
        writer: PackWriter | None = None
        try:
            try:
                drill = await self.drills.enabled(instance)
                params = await self.sources.params(bi, instance.subscription, engine)
                writer = self.points.writer(
                    instance.parent_key, job=p.job, want=await self._kek_for(instance), now=self.svc.now(),
                    retain_until=await self._lock_until(instance, bi.policyInfo.policyId),
                )  # fmt: skip
                dump_files = getattr(engine, "dump_files", None)
                if dump_files is not None:  # the optional multi-file capability (a server, containers)
                    previous = await self.points.reusable_files(instance.key)
                    versions = {name: str(entry.version) for name, entry in previous.items()}
                    entries, checked = await _store_files(
                        writer, engine, dump_files(params, versions), previous
                    )
                    prints = None
                else:
                    async with engine.dump(params, fingerprint=drill, compress=False) as dump:
                        entry, checked = await _store_and_check(writer, engine, dump.chunks())
                        prints = dump.fingerprint
                    entries = [entry]
                written = await writer.finish()
                manifest = PointManifest(
                    recoveryPointId=rp_id, instance=instance.key, engine=engine.stream_format,
                    engineVersion=engine.tool_version, details=checked, files=entries,
                )  # fmt: skip
                await self.points.write_manifest(writer, object_key, manifest)
            except KeyUnavailableError as exc:
                await self._fail(p.job, UserError("UserErrorVaultKeyUnavailable", f"The vault's encryption key is not available: {exc}.",
                                                  "Store the vault's key-encryption key (dpvault keys set <keyUri>) or fix encryptionSettings."))  # fmt: skip
                return
            except UserError as exc:
                await self._fail(p.job, exc)
                return
            except DatastoreError as exc:
                if not isinstance(exc, PermanentError):
                    raise  # an outage of the store: the queue retries the job
                await self._fail(p.job, _store_failure(exc))
                return
            recorded = await self._record(
                claimed, instance, engine, rp_id, object_key, manifest, checked, prints, drill, written
            )
        finally:
            if not recorded:  # failed, deleted meanwhile, or interrupted: the point goes
                with contextlib.suppress(Exception):
                    if writer is not None:
                        await asyncio.shield(writer.abort())
                    await asyncio.shield(self.points.abandon(rp_id, object_key))
        await self.points.sweep(incomplete_only=True)

    async def _lock_until(self, instance: ResourceRow, policy_id: str) -> float | None:
        """In an immutable vault, what a backup writes is locked for as long as the policy can keep
        it (the datastore's object lock where it has one; garbage collection respects it always)."""
        async with self.svc.store.read() as tx:
            vault = await tx.resource(instance.parent_key)
            policy_row = await tx.resource(policy_id.lower())
        if not immutability.is_immutable(vault) or policy_row is None:
            return None
        longest = immutability.max_retention(decode_policy(policy_row.body).properties)
        return time.time() + longest if longest is not None else None

    async def _kek_for(self, instance: ResourceRow) -> KekRef:
        """The KEK the instance's vault names: its customer-managed key (``encryptionSettings``,
        api-version 2024-04-01 and later), else the data dir's own."""
        async with self.svc.store.read() as tx:
            vault = await tx.resource(instance.parent_key)
        body = msgspec.json.decode(vault.body) if vault else {}
        settings = ((body.get("properties") or {}).get("securitySettings") or {}).get(
            "encryptionSettings"
        ) or {}
        uri = (settings.get("keyVaultProperties") or {}).get("keyUri")
        if not uri or str(settings.get("state", "Enabled")).lower() == "disabled":
            return KekRef()
        return KekRef(str(uri), await self.credentials.tenant_of(instance.subscription))

    async def _record(
        self,
        claimed: Claimed[payloads.Backup],
        instance: ResourceRow,
        engine: Engine,
        rp_id: str,
        object_key: str,
        manifest: PointManifest,
        checked: dict[str, Any],
        prints: dict[str, list[Any]] | None,
        drill: bool,
        written: Written,
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
                **checked, "pgDumpVersion": engine.tool_version, "objectKey": object_key, "vaultFormat": vault_format.FORMAT,
                "storedBytes": written.stored_bytes, "reusedBytes": written.reused_bytes,
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
                details={"RetentionTag": tag, "RecoveryPointId": rp_id, "SHA256": manifest.sha256, "Worker": claimed.worker,
                         "StoredBytes": str(written.stored_bytes), "DeduplicatedBytes": str(written.reused_bytes)},
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
            UserError(
                "InternalError",
                f"The backup could not be completed: {reason}",
                "Retry the backup.",
                user_error=False,
            ),
        )


async def _store_files(
    writer: PackWriter,
    engine: Any,
    files: AsyncIterator[SourceFile],
    previous: dict[str, FileEntry],
) -> tuple[list[FileEntry], dict[str, Any]]:
    """Each file of a multi-file dump into the vault (checked by the engine on the way, unless it
    checks none), or reused from the previous point when the engine says its source is unchanged;
    the details are the engine's summary of every file's check (the point's metaData); a reused
    file's check is ``{"reused": True}``."""
    entries: list[FileEntry] = []
    checks: dict[str, Any] = {}
    checked_files = getattr(engine, "checks_files", True)
    try:
        async for item in files:
            if item.chunks is None:
                entry = previous.get(item.name)
                if entry is None or entry.version != item.version:
                    raise RuntimeError(f"engine {engine.name} reused a file the previous point lacks")
                entries.append(writer.reuse(entry))
                checks[item.name] = {"reused": True}
                continue
            if checked_files:
                entry, checks[item.name] = await _store_and_check(
                    writer, engine, item.chunks, name=item.name,
                    checker=lambda c, n=item.name: engine.check_file(n, c),
                )  # fmt: skip
            else:
                entry = await writer.add_file(item.name, item.chunks)
                checks[item.name] = {}
            entry.version = item.version
            entries.append(entry)
    finally:
        aclose = getattr(files, "aclose", None)
        if aclose is not None:  # a failure midway: the dump in progress (a pg_dump) ends now
            await aclose()
    return entries, engine.point_details(checks)


async def _store_and_check(
    writer: PackWriter,
    engine: Engine,
    chunks: AsyncIterator[bytes],
    *,
    name: str = "database.dump",
    checker: Any = None,
) -> tuple[FileEntry, dict[str, Any]]:
    """One pass over the dump: its bytes into the vault and, alongside, into the engine's archive
    check (``pg_restore --list`` reads the table of contents and drains the rest)."""
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=2)

    async def for_check() -> AsyncIterator[bytes]:
        while (item := await queue.get()) is not None:
            yield item

    check = asyncio.create_task(engine.check(for_check()) if checker is None else checker(for_check()))

    async def tee() -> AsyncIterator[bytes]:
        async for chunk in chunks:
            if not check.done():
                await queue.put(chunk)
            yield chunk
        if not check.done():
            await queue.put(None)

    try:
        entry = await writer.add_file(name, tee())
    except BaseException:
        check.cancel()
        with contextlib.suppress(BaseException):
            await check
        raise
    return entry, await check

"""Restore jobs: ``restore`` and ``validateRestore`` (run by the durable worker), for every engine.

Order, always: the recovery point's bytes are re-hashed and must match the SHA-256 recorded at
backup time *before* anything is written to the target. Files targets are engine-neutral
(``restore_files.py``); a datasource target is the engine's, fed a local copy of the archive.
Each job re-reads its records and does nothing once they are terminal, so a re-claimed job is safe.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import structlog

from dpvault.engines.base import Engine, Params
from dpvault.engines.registry import Engines
from dpvault.errors import UserError, internal_error
from dpvault.jobs.worker import Claimed
from dpvault.model import backup_jobs, operations, payloads
from dpvault.model.instances.rules import decode_instance
from dpvault.model.instances.schema import BackupInstance, Datasource, SecretStoreBasedAuthCredentials
from dpvault.protection.credentials import Credentials
from dpvault.protection.restore_blobs import BlobRestorer, is_blob_target
from dpvault.protection.restore_files import FileRestorer
from dpvault.protection.sources import Sources
from dpvault.protection.verified import (
    corrupted,
    format_unsupported,
    key_unavailable,
    open_files,
    point_files,
    verify_point,
)
from dpvault.services import Services
from dpvault.store import RecoveryPointRow, Tx
from dpvault.types import OperationStatus
from dpvault.vault.format import UnsupportedFormatError
from dpvault.vault.keys import KeyUnavailableError
from dpvault.vault.points import PointDamagedError, RecoveryPoints

log = structlog.get_logger("dpvault.restore")

FILES = "RestoreFilesTargetInfo"


def _multi_file(engine: Engine) -> bool:
    """An engine whose points are several files restores them itself (``MultiFileEngine``)."""
    return getattr(engine, "restore_files", None) is not None


def _point_gone() -> UserError:
    return UserError(
        "UserErrorRecoveryPointNotFound",
        "The recovery point no longer exists.",
        "Choose another recovery point.",
    )


class RestoreJobs:
    def __init__(
        self,
        svc: Services,
        engines: Engines,
        credentials: Credentials,
        points: RecoveryPoints,
        files: FileRestorer,
        blobs: BlobRestorer | None = None,
        sources: Sources | None = None,
    ) -> None:
        """``blobs``: restores as files into blob containers (None: such targets fail as not mapped);
        ``sources``: where targets named by ARM id are (a flexible server, a storage account)."""
        self.svc = svc
        self.engines = engines
        self.credentials = credentials
        self.points = points
        self.files = files
        self.blobs = blobs
        self.sources = sources or Sources(credentials, None)

    def _blobs(self) -> BlobRestorer:
        if self.blobs is None:
            raise UserError(
                "UserErrorRestoreTargetNotSupported",
                "This server does not restore into blob containers.",
                "Restore as files into a local directory (file:///...).",
            )
        return self.blobs

    def _engine(self, source: BackupInstance) -> Engine:
        engine = self.engines.for_type(source.dataSourceInfo.datasourceType)
        if engine is None:
            raise UserError(
                "UserErrorRestoreTargetNotSupported",
                f"dpvault has no engine to restore datasource type '{source.dataSourceInfo.datasourceType}' into.",
                "Restore as files (RestoreFilesTargetInfo).",
            )
        return engine

    async def target_params(
        self, source: BackupInstance, target: dict[str, Any], subscription: str
    ) -> tuple[Engine, Params]:
        """The engine and connection parameters of a datasource target: its own credentials, else the
        instance's."""
        engine = self._engine(source)
        creds = source.datasourceAuthCredentials
        if target.get("datasourceAuthCredentials"):
            creds = msgspec.convert(target["datasourceAuthCredentials"], SecretStoreBasedAuthCredentials)
        if _multi_file(engine) and creds is None and getattr(engine, "uses_source_mapping", False):
            params = await self.sources.target_params(target, subscription, engine)  # by ARM id
        else:
            params = await self.credentials.params(creds, subscription, engine)
        return engine, engine.restore_params(params, msgspec.convert(target["datasourceInfo"], Datasource))

    def _check_files_target(self, source: BackupInstance) -> None:
        """A point whose files are not archives (blobs) restores into a datasource only."""
        engine = self.engines.for_type(source.dataSourceInfo.datasourceType)
        if engine is not None and not getattr(engine, "restores_as_files", True):
            raise UserError(
                "UserErrorRestoreTargetNotSupported",
                f"A '{source.dataSourceInfo.datasourceType}' recovery point restores into a storage account, "
                "not as files.",
                "Restore with RestoreTargetInfo (whole containers) or ItemLevelRestoreTargetInfo (items).",
            )

    async def _load(self, job_id: str | None, instance_key: str, rp_id: str) -> tuple[Any, Any, Any]:
        async with self.svc.store.read() as tx:
            job = await tx.backup_job(job_id) if job_id else None
            instance = await tx.resource(instance_key)
            rp = await tx.recovery_point(rp_id)
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
            await backup_jobs.finish(
                tx, job_id, now=self.svc.now(), status=status,
                error=error.user_facing() if error else None, details=details,
            )  # fmt: skip

        await self.svc.store.transact(write)

    # -- restore -----------------------------------------------------------------------------

    async def restore(self, claimed: Claimed[payloads.Restore]) -> None:
        p = claimed.payload
        job, instance, rp = await self._load(p.job, p.instance, p.rp)
        if job is None or job.terminal:
            if job is not None and job.status == backup_jobs.COMPLETED and instance is not None:
                await self._release_after_crash(instance, p.target, job.id)  # it crashed before its release
            return
        if instance is None or rp is None or rp.state != "available":
            await self._finish_job(job.id, backup_jobs.FAILED, error=_point_gone())
            return
        source = decode_instance(instance.body).properties
        files = p.target["objectType"] == FILES
        blobs = files and is_blob_target(p.target["targetDetails"])
        engine: Engine | None = None
        params: Params = {}
        try:
            if files:
                self._check_files_target(source)
            if blobs:
                details = await self._blobs().to_blobs(
                    rp, p.target["targetDetails"], instance.subscription, owner=job.id
                )
            elif files:
                several = await point_files(self.points, rp)
                if len(several) > 1:
                    details = await self.files.to_files_of(rp, p.target, job.id, several)
                else:
                    details = await self.files.to_files(rp, p.target, owner=job.id)
            else:
                engine, params = await self.target_params(source, p.target, instance.subscription)
                if _multi_file(engine):
                    point = await open_files(self.points, rp)
                    details = await engine.restore_files(point, params, p.target, owner=job.id)  # type: ignore[attr-defined]
                else:
                    details = await self.to_datasource(engine, rp, params, owner=job.id)
        except UserError as exc:
            log.info("restore failed", job=job.id, code=exc.code)
            await self._finish_job(job.id, backup_jobs.FAILED, error=exc)
            return
        await self._finish_job(job.id, backup_jobs.COMPLETED, details=details)
        # Only now that Completed is committed may the marks of "this job's work" go.
        await self._release(p.target, job.id, engine, params)

    async def _release(
        self, target: dict[str, Any], job_id: str, engine: Engine | None, params: Params
    ) -> None:
        """A completed restore's marks go (best effort: what stays is harmless, and a re-claim of
        the job after a crash tries again)."""
        try:
            if target["objectType"] == FILES and is_blob_target(target["targetDetails"]):
                pass  # blobs carry the job's id in their metadata: nothing to release
            elif target["objectType"] == FILES:
                await asyncio.to_thread(self.files.release, target, job_id)
            elif engine is not None:
                await engine.release(params, job_id)
        except Exception as exc:  # harmless leftovers: a hidden link, a database comment
            log.warning("restore marks not removed", job=job_id, error=type(exc).__name__)

    async def _release_after_crash(self, instance: Any, target: dict[str, Any], job_id: str) -> None:
        """The release of a job whose Completed was committed by a worker that died before it
        released: what the job restored is the user's now, and must never be taken as leftovers."""
        engine: Engine | None = None
        params: Params = {}
        if target["objectType"] != FILES:
            try:
                engine, params = await self.target_params(
                    decode_instance(instance.body).properties, target, instance.subscription
                )
            except Exception:  # the target's mapping is gone: its marks stay, harmless
                log.warning("restore marks not removed", job=job_id, exc_info=True)
                return
        await self._release(target, job_id, engine, params)

    async def _file_names(self, rp: RecoveryPointRow) -> list[str] | None:
        """The names of a multi-file point's files (None for a point of one archive)."""
        files = await point_files(self.points, rp)
        return [name for name, _ in files] if len(files) > 1 else None

    async def to_datasource(
        self, engine: Engine, rp: RecoveryPointRow, params: Params, *, owner: str
    ) -> dict[str, str]:
        """Restore a local copy of the point's archive into the target, the copy checked whole
        against what was recorded before anything is written to the target."""
        try:
            async with self.points.local_copy(rp) as archive:
                return await engine.restore(archive, params, owner=owner)
        except PointDamagedError:
            raise corrupted(rp.id) from None
        except UnsupportedFormatError as exc:
            raise format_unsupported(rp.id, exc) from None
        except KeyUnavailableError as exc:
            raise key_unavailable(rp.id, exc) from None

    # -- validateRestore ---------------------------------------------------------------------

    async def validate(self, claimed: Claimed[payloads.ValidateRestore]) -> None:
        p = claimed.payload
        job, instance, rp = await self._load(p.job, p.instance, p.rp)
        failure: UserError | None = None
        if instance is None or rp is None or rp.state != "available":
            failure = _point_gone()
        else:
            try:
                await self._check(
                    decode_instance(instance.body).properties, rp, p.target, instance.subscription
                )
            except UserError as exc:
                failure = exc

        async def write(tx: Tx) -> None:
            now = self.svc.now()
            if failure is not None:
                await operations.finish(
                    tx, p.operation, now=now, status=OperationStatus.FAILED, error=failure.to_arm()
                )
                if job is not None:
                    await backup_jobs.finish(
                        tx, job.id, now=now, status=backup_jobs.FAILED, error=failure.user_facing()
                    )
                return
            result: dict[str, Any] = {"objectType": "OperationJobExtendedInfo"}
            if job is not None:
                result["jobId"] = job.id
                await backup_jobs.finish(tx, job.id, now=now, status=backup_jobs.COMPLETED)
            await operations.finish(tx, p.operation, now=now, status=OperationStatus.SUCCEEDED, result=result)

        await self.svc.store.transact(write)

    async def _check(
        self, source: BackupInstance, rp: RecoveryPointRow, target: dict[str, Any], subscription: str
    ) -> None:
        """What a restore would check before writing: the point's bytes, then the target."""
        await verify_point(self.points, rp)
        if target["objectType"] == FILES:
            self._check_files_target(source)
        if target["objectType"] == FILES and is_blob_target(target["targetDetails"]):
            await self._blobs().check(target["targetDetails"], subscription, await self._file_names(rp))
            return
        if target["objectType"] == FILES:
            self.files.check(target, await self._file_names(rp))
            return
        engine, params = await self.target_params(source, target, subscription)
        if _multi_file(engine):
            await engine.check_restore(await open_files(self.points, rp), params, target)  # type: ignore[attr-defined]
        else:
            await engine.check_target(params)

    async def _abandon(self, instance: Any, target: dict[str, Any], job_id: str) -> None:
        """What a restore that gave up left in its target goes: a files restore's staging files, and,
        best effort (the job fails anyway), the blobs it wrote (their metadata names it) or what an
        engine with ``abandon`` left in a datasource (a whole-server restore's databases and roles)."""
        if target.get("objectType") == FILES and not is_blob_target(target.get("targetDetails") or {}):
            # a crash's staging file, a dump without its checksum file
            await asyncio.to_thread(self.files.abandon, target, job_id)
            return
        if instance is None:
            return
        try:
            if target.get("objectType") == FILES:
                if self.blobs is not None:
                    await self.blobs.abandon(target["targetDetails"], instance.subscription, job_id)
            else:
                engine, params = await self.target_params(
                    decode_instance(instance.body).properties, target, instance.subscription
                )
                abandon = getattr(engine, "abandon", None)
                if abandon is not None:
                    await abandon(params, job_id)
        except Exception:  # the target is unreachable or its mapping gone: nothing more to do here
            log.warning("restore_abandon_failed", job=job_id, exc_info=True)

    async def give_up(self, claimed: Claimed[Any], reason: str) -> None:
        error = UserError(
            "InternalError", f"The job could not be completed: {reason}", "Retry.", user_error=False
        )
        target = getattr(claimed.payload, "target", None)
        job_id = claimed.payload.job
        if isinstance(claimed.payload, payloads.Restore) and job_id and target:
            job, instance, _ = await self._load(job_id, claimed.payload.instance, claimed.payload.rp)
            if job is not None and job.terminal:
                # its end was committed before the crash: a Completed job's work is the user's
                if job.status == backup_jobs.COMPLETED and instance is not None:
                    await self._release_after_crash(instance, target, job_id)
                return
            await self._abandon(instance, target, job_id)
        operation = getattr(claimed.payload, "operation", None)
        if operation:
            await self.svc.store.transact(lambda tx: operations.finish(
                tx, operation, now=self.svc.now(), status=OperationStatus.FAILED,
                error=internal_error(error.message)))  # fmt: skip
        if claimed.payload.job:
            await self._finish_job(claimed.payload.job, backup_jobs.FAILED, error=error)

"""Recovery points' lifecycle: the one owner of their rows and objects.

A point's row (``recovery_points``) is written before its objects and removed after them, so no
object is ever unaccounted for:

- **writing**: ``intend`` inserts the row in state ``writing`` (invisible to the API) naming the
  backup job that writes the point, before the first byte is put; ``commit`` makes it ``available``
  in the transaction that completes the job; ``abandon`` removes a point whose backup failed.
- **removing**: ``retire`` marks rows ``deleting`` (invisible, not restorable) in the caller's
  transaction; ``delete_data`` removes their objects; ``forget`` removes the rows. Each step may be
  repeated after a crash.
- **reading**: ``verify`` reads the manifest (refusing a format it does not know) and re-hashes the
  archive against the SHA-256 recorded when it was taken.
- **sweeping**: incomplete writes of dead writers, ``writing`` rows whose job has ended, and objects
  no row refers to (older than the sweep's grace) are removed.

This module is the only caller of ``Datastore.delete``.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import msgspec
import structlog

from dpvault.datastores.base import Datastore, ObjectNotFoundError
from dpvault.errors import DpvaultError
from dpvault.store import RecoveryPointRow, ResourceRow, Store, Tx
from dpvault.vault import format as vault_format
from dpvault.vault.format import Manifest

log = structlog.get_logger("dpvault.vault")

WRITING = "writing"
AVAILABLE = "available"
DELETING = "deleting"


class PointDamagedError(DpvaultError):
    """A recovery point whose objects are missing or do not match what was recorded."""

    def __init__(self, rp_id: str, problem: str) -> None:
        super().__init__(f"recovery point {rp_id}: {problem}")
        self.rp_id = rp_id
        self.problem = problem


class RecoveryPoints:
    def __init__(self, store: Store, datastore: Datastore, *, grace: float) -> None:
        """``grace``: how long (seconds) an incomplete write may go without a heartbeat, and an
        unreferenced object may exist, before the sweep takes it (two job leases)."""
        self.store = store
        self.datastore = datastore
        self.grace = grace

    # -- writing a point -----------------------------------------------------------------------

    async def intend(
        self, *, rp_id: str, instance: ResourceRow, archive: str, job: str, taken_at: float, now: float
    ) -> None:
        """Record that job ``job`` is about to write point ``rp_id`` (its own transaction)."""

        async def write(tx: Tx) -> None:
            await tx.insert_recovery_point(
                id=rp_id, instance_key=instance.key, vault_key=instance.parent_key, time=taken_at, tag="",
                rule_name="", policy_name="", policy_version="", data_store="VaultStore", object_key=archive,
                size=0, sha256="", expiry=None, details=msgspec.json.encode({"job": job}), state=WRITING,
                created_at=now,
            )  # fmt: skip

        await self.store.transact(write)

    async def commit(self, tx: Tx, rp_id: str, **values: Any) -> None:
        """The point is whole and recorded: visible from the caller's commit on."""
        await tx.update_recovery_point(rp_id, state=AVAILABLE, **values)

    async def abandon(self, rp_id: str, archive: str) -> None:
        """A point whose backup failed: its objects (whatever of them exists), then its row."""
        await self._delete_keys(vault_format.keys_of(archive))
        await self.store.transact(lambda tx: tx.delete_recovery_point(rp_id))

    async def abandon_job(self, job: str, instance_key: str) -> int:
        """What earlier attempts of backup job ``job`` left (its lease has passed to the caller):
        their incomplete writes and the points they intended. Returns how many points."""
        await self.datastore.sweep_incomplete(writer=job)
        async with self.store.read() as tx:
            rows = await tx.recovery_points_of(instance_key, states=(WRITING,))
        mine = [rp for rp in rows if _writer_of(rp) == job]
        for rp in mine:
            await self.abandon(rp.id, rp.object_key)
        return len(mine)

    # -- removing points -------------------------------------------------------------------------

    async def retire(self, tx: Tx, points: Sequence[RecoveryPointRow]) -> None:
        """Mark ``points`` deleting, in the caller's transaction: no longer listed or restorable."""
        for rp in points:
            await tx.update_recovery_point(rp.id, state=DELETING)

    async def retire_expired(self, tx: Tx, rp_ids: Sequence[str], *, now: float) -> list[str]:
        """Mark deleting those of ``rp_ids`` retention may still delete (re-checked in this write: a
        restore may have started reading one since they were listed); returns the ids marked."""
        return await tx.mark_expired(rp_ids, now=now)

    async def delete_data(self, points: Sequence[RecoveryPointRow]) -> None:
        """The objects of retired points (idempotent)."""
        await self._delete_keys([key for rp in points for key in vault_format.keys_of(rp.object_key)])

    async def forget(self, tx: Tx, points: Sequence[RecoveryPointRow]) -> None:
        """The rows of points whose objects are gone, in the caller's transaction."""
        for rp in points:
            await tx.delete_recovery_point(rp.id)

    async def forget_vaults(self, tx: Tx, vault_keys: Sequence[str]) -> None:
        await tx.delete_recovery_points_in_vaults(vault_keys)

    async def purge(self, points: Sequence[RecoveryPointRow]) -> None:
        """Objects, then rows, of points already retired."""
        await self.delete_data(points)
        await self.store.transact(lambda tx: self.forget(tx, points))

    async def _delete_keys(self, keys: Sequence[str]) -> None:
        for key in keys:
            await self.datastore.delete(key)

    # -- reading points --------------------------------------------------------------------------

    async def verify(self, rp: RecoveryPointRow, *, progress: Any = None) -> Manifest:
        """The point's manifest, once its archive re-hashed to the SHA-256 recorded when it was
        taken. PointDamagedError if anything is missing or differs; UnsupportedFormatError for a
        vault format this version cannot read. ``progress(n)``: after each chunk read."""
        if await self.datastore.stat(rp.object_key) is None:
            raise PointDamagedError(rp.id, "missing")
        try:
            manifest = await vault_format.read_manifest(self.datastore, rp.object_key)
        except vault_format.ManifestMissingError as exc:
            raise PointDamagedError(rp.id, str(exc)) from None
        size, sha = await self.hash(rp.object_key, progress)
        if (size, sha) != (rp.size, rp.sha256):
            raise PointDamagedError(rp.id, "corrupt: SHA-256 differs")
        if (manifest.size, manifest.sha256) != (rp.size, rp.sha256):
            raise PointDamagedError(rp.id, "corrupt: the manifest does not match the recovery point")
        return manifest

    async def hash(self, key: str, progress: Any = None) -> tuple[int, str]:
        """(size, SHA-256) of an object, streamed; ``progress(n)`` after each chunk."""
        digest = hashlib.sha256()
        size = 0
        try:
            async for chunk in self.datastore.get(key):
                await asyncio.to_thread(digest.update, chunk)
                size += len(chunk)
                if progress is not None:
                    progress(len(chunk))
        except ObjectNotFoundError:
            raise PointDamagedError(key, "missing") from None
        return size, digest.hexdigest()

    def read(self, rp: RecoveryPointRow) -> AsyncIterator[bytes]:
        """The point's archive, streamed (callers check its SHA-256 as they go)."""
        return self.datastore.get(rp.object_key)

    def local_copy(self, rp: RecoveryPointRow) -> AbstractAsyncContextManager[Path]:
        return self.datastore.local_copy(rp.object_key)

    # -- sweeping --------------------------------------------------------------------------------

    async def sweep(self, *, incomplete_only: bool = False) -> int:
        """Remove incomplete writes of dead writers and (unless ``incomplete_only``) points being
        written by jobs that have ended, and objects no row refers to. Safe at any time, from any
        process. Returns how many things were removed."""
        removed = await self.datastore.sweep_incomplete(older_than=self.grace)
        if not incomplete_only:
            removed += await self._sweep_intents()
            removed += await self._sweep_unreferenced()
        if removed:
            log.info("vault sweep", removed=removed)
        return removed

    async def _sweep_intents(self) -> int:
        async with self.store.read() as tx:
            writing = await tx.recovery_points_in_state(WRITING)
            ended = []
            for rp in writing:
                job = await tx.backup_job(_writer_of(rp) or "")
                if job is None or job.terminal:
                    ended.append(rp)
        for rp in ended:
            await self.abandon(rp.id, rp.object_key)
        return len(ended)

    async def _sweep_unreferenced(self) -> int:
        async with self.store.read() as tx:
            keys = await tx.all_recovery_point_keys()
        referenced = {key for archive in keys for key in vault_format.keys_of(archive)}
        cutoff = time.time() - self.grace
        stale = [
            info.key
            async for info in self.datastore.list()
            if info.key not in referenced and info.modified < cutoff
        ]
        await self._delete_keys(stale)
        return len(stale)

    # -- soft delete (issue 13; added by the soft-delete work, kept apart from the rest) --------

    async def hold(self, tx: Tx, instance_key: str, held_key: str) -> int:
        """A soft-deleted instance's points move (rows only) under the key its deleted record has,
        in the caller's transaction, so an instance created again under the name starts empty.
        Returns how many. Their retention is paused by the caller (a stopped schedule row)."""
        return await tx.move_recovery_points(instance_key, held_key)

    async def release(self, tx: Tx, held_key: str, instance_key: str) -> int:
        """Undelete: the held points come back to the instance, in the caller's transaction."""
        return await tx.move_recovery_points(held_key, instance_key)


def _writer_of(rp: RecoveryPointRow) -> str | None:
    writer = msgspec.json.decode(rp.details).get("job") if rp.details else None
    return writer if isinstance(writer, str) else None

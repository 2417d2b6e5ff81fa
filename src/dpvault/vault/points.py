"""Recovery points' lifecycle: the one owner of their rows and objects.

A point's row (``recovery_points``) is written before its objects and removed after them, so no
object is ever unaccounted for:

- **writing**: ``intend`` inserts the row in state ``writing`` (invisible to the API) naming the
  backup job that writes the point, before the first byte is put -- and waits while garbage
  collection holds the vault; format 2's chunks go through ``writer`` into packs, then
  ``write_manifest``; ``commit`` makes the row ``available`` in the transaction that completes the
  job; ``abandon`` removes a point whose backup failed.
- **removing**: ``retire`` marks rows ``deleting`` (invisible, not restorable) in the caller's
  transaction; ``delete_data`` removes the objects that are the point's alone; ``forget`` removes the
  rows (and marks the vault's shared packs for garbage collection). Each step may be repeated after
  a crash. ``delete_vaults`` removes whole vaults' data (their resource group was deleted).
- **reading**: ``verify`` reads the manifest (refusing a format it does not know) and re-reads the
  data against what was recorded; ``read`` and ``local_copy`` hand restores the bytes.
- **sweeping**: incomplete writes of dead writers, ``writing`` rows whose job has ended, objects no
  row refers to (older than the sweep's grace), and the garbage of vaults whose points were deleted
  (``gc.py``).

This module is the only caller of ``Datastore.delete``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
import structlog

from dpvault.datastores.base import Datastore, ObjectLockedError, ObjectNotFoundError, put_bytes
from dpvault.errors import DpvaultError
from dpvault.store import RecoveryPointRow, ResourceRow, Store, Tx
from dpvault.vault import format as vault_format
from dpvault.vault.format import FileEntry, Manifest, PointManifest
from dpvault.vault.gc import Collected, Collector
from dpvault.vault.keys import KekRef, SealError, VaultKeys
from dpvault.vault.packs import ChunkDamagedError, PackWriter, PointReader

log = structlog.get_logger("dpvault.vault")

WRITING = "writing"
AVAILABLE = "available"
DELETING = "deleting"
MAINTENANCE_WAIT = 600.0  # how long a backup waits for a garbage collection of its vault to end


class PointDamagedError(DpvaultError):
    """A recovery point whose objects are missing or do not match what was recorded."""

    def __init__(self, rp_id: str, problem: str) -> None:
        super().__init__(f"recovery point {rp_id}: {problem}")
        self.rp_id = rp_id
        self.problem = problem


class VaultBusyError(DpvaultError):
    """Garbage collection has held the vault for longer than a backup waits."""


class RecoveryPoints:
    def __init__(
        self,
        store: Store,
        datastore: Datastore,
        *,
        grace: float,
        keys: VaultKeys,
        tmp_dir: Path | None = None,
    ) -> None:
        """``grace``: how long (seconds) an incomplete write may go without a heartbeat, and an
        unreferenced object may exist, before the sweep takes it (two job leases); it is also the
        lease garbage collection renews while it holds a vault."""
        self.store = store
        self.datastore = datastore
        self.grace = grace
        self.keys = keys
        self.tmp_dir = tmp_dir
        self.collector = Collector(store, datastore, keys, lease=max(grace, 2.0), grace=grace)

    # -- writing a point -----------------------------------------------------------------------

    async def intend(
        self, *, rp_id: str, instance: ResourceRow, archive: str, job: str, taken_at: float, now: float
    ) -> None:
        """Record that job ``job`` is about to write point ``rp_id`` (its own transaction), once no
        garbage collection holds the vault (VaultBusyError after ``MAINTENANCE_WAIT``)."""

        async def write(tx: Tx) -> bool:
            if await tx.maintenance_until(instance.parent_key) > time.time():
                return False
            await tx.insert_recovery_point(
                id=rp_id, instance_key=instance.key, vault_key=instance.parent_key, time=taken_at, tag="",
                rule_name="", policy_name="", policy_version="", data_store="VaultStore", object_key=archive,
                size=0, sha256="", expiry=None, details=msgspec.json.encode({"job": job}), state=WRITING,
                created_at=now,
            )  # fmt: skip
            return True

        deadline = time.monotonic() + MAINTENANCE_WAIT
        while not await self.store.transact(write):
            if time.monotonic() > deadline:
                raise VaultBusyError("the vault's garbage collection did not end in time")
            await asyncio.sleep(0.5)

    def writer(
        self, vault_key: str, *, job: str, want: KekRef | None, now: float, retain_until: float | None = None
    ) -> PackWriter:
        """Where a format-2 backup's chunks go (the vault's data key is made with its first chunk).
        ``retain_until``: the packs it writes are locked until then (immutable vaults)."""
        return PackWriter(
            self.store, self.datastore, vault_key, lambda: self.keys.data_key(vault_key, want, now=now),
            writer=job, retain_until=retain_until,
        )  # fmt: skip

    async def write_manifest(self, writer: PackWriter, object_key: str, manifest: PointManifest) -> None:
        """After every chunk is in a pack and indexed (``writer.finish``): the sealed manifest."""
        sealed = vault_format.seal_manifest(manifest, await writer.data_key())
        await put_bytes(
            self.datastore, object_key, sealed, writer=writer.writer, retain_until=writer.retain_until
        )

    async def commit(self, tx: Tx, rp_id: str, **values: Any) -> None:
        """The point is whole and recorded: visible from the caller's commit on."""
        await tx.update_recovery_point(rp_id, state=AVAILABLE, **values)

    async def abandon(self, rp_id: str, object_key: str) -> None:
        """A point whose backup failed: its own objects (whatever of them exists), then its row. The
        packs it wrote are garbage unless another point uses their chunks: its vault is marked for
        collection."""
        await self._delete_keys(vault_format.keys_of(object_key))
        async with self.store.read() as tx:
            row = await tx.recovery_point(rp_id)
        shared = [row.vault_key] if row is not None and vault_format.format_of(object_key) == 2 else []
        await self.store.transact(lambda tx: self._forget(tx, [rp_id], shared))

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
        """The objects that are retired points' alone (idempotent); shared packs wait for collection."""
        await self._delete_keys([key for rp in points for key in vault_format.keys_of(rp.object_key)])

    async def forget(self, tx: Tx, points: Sequence[RecoveryPointRow]) -> None:
        """The rows of points whose objects are gone, in the caller's transaction."""
        shared = [rp.vault_key for rp in points if vault_format.format_of(rp.object_key) == 2]
        await self._forget(tx, [rp.id for rp in points], shared)

    async def _forget(self, tx: Tx, rp_ids: Sequence[str], dirty_vaults: Sequence[str]) -> None:
        for rp_id in rp_ids:
            await tx.delete_recovery_point(rp_id)
        if dirty_vaults:
            await tx.mark_dirty(dirty_vaults, now=time.time())

    async def purge(self, points: Sequence[RecoveryPointRow]) -> None:
        """Objects, then rows, of points already retired."""
        await self.delete_data(points)
        await self.store.transact(lambda tx: self.forget(tx, points))

    async def delete_vaults(self, vault_keys: Sequence[str]) -> None:
        """Everything stored for these vaults (their points retired): objects, then rows."""
        for vault_key in vault_keys:
            stale = [
                info.key async for info in self.datastore.list(vault_format.vault_prefix(vault_key) + "/")
            ]
            await self._delete_keys(stale)

        async def forget(tx: Tx) -> None:
            await tx.delete_recovery_points_in_vaults(vault_keys)
            await tx.forget_vault_data(vault_keys)

        await self.store.transact(forget)

    async def _delete_keys(self, keys: Sequence[str]) -> None:
        for key in keys:
            await self._delete_key(key)

    async def _delete_key(self, key: str) -> None:
        """Delete one object; one the store itself keeps under an object lock (an immutable vault's,
        on S3) stays until its date, and the sweep takes it after (an object no row refers to)."""
        try:
            await self.datastore.delete(key)
        except ObjectLockedError:
            log.info("object kept until its lock ends", key=key)

    # -- reading points --------------------------------------------------------------------------

    async def manifest(self, rp: RecoveryPointRow) -> Manifest | PointManifest:
        """The point's manifest; UnsupportedFormatError for a vault format this version cannot read,
        PointDamagedError if it is missing or does not open."""
        try:
            if vault_format.format_of(rp.object_key) == 1:
                return await vault_format.read_manifest(self.datastore, rp.object_key)
            found = vault_format.envelope(await vault_format.read_object(self.datastore, rp.object_key))
            key = await self.keys.data_key(rp.vault_key, now=time.time())
            return vault_format.open_manifest(found, key, rp.id)
        except vault_format.ManifestMissingError as exc:
            raise PointDamagedError(rp.id, str(exc)) from None
        except SealError:
            raise PointDamagedError(rp.id, "corrupt: the manifest does not authenticate") from None

    async def verify(
        self, rp: RecoveryPointRow, *, progress: Any = None, quick: bool = False
    ) -> Manifest | PointManifest:
        """The point's manifest, once its data re-read to the SHA-256 recorded when it was taken
        (``quick``: only that every object and chunk it needs exists). PointDamagedError if anything
        is missing or differs; UnsupportedFormatError for a format this version cannot read.
        ``progress(n)``: after each chunk read."""
        if vault_format.format_of(rp.object_key) == 1 and await self.datastore.stat(rp.object_key) is None:
            raise PointDamagedError(rp.id, "missing")
        manifest = await self.manifest(rp)
        if (manifest.size, manifest.sha256) != (rp.size, rp.sha256):
            raise PointDamagedError(rp.id, "corrupt: the manifest does not match the recovery point")
        if isinstance(manifest, Manifest):
            if quick:
                info = await self.datastore.stat(rp.object_key)
                if info is None or info.size != rp.size:
                    raise PointDamagedError(rp.id, "missing or truncated")
                return manifest
            size, sha = await self.hash(rp.object_key, progress)
            if (size, sha) != (rp.size, rp.sha256):
                raise PointDamagedError(rp.id, "corrupt: SHA-256 differs")
            return manifest
        reader = await self._reader(rp)
        for entry in manifest.files:
            try:
                if quick:
                    await reader.check_exists(entry)
                else:
                    async for _ in reader.read_file(entry, progress=progress):
                        pass
            except ChunkDamagedError as exc:
                raise PointDamagedError(rp.id, f"{entry.name}: {exc}") from None
        return manifest

    async def _reader(self, rp: RecoveryPointRow) -> PointReader:
        key = await self.keys.data_key(rp.vault_key, now=time.time())
        return PointReader(self.store, self.datastore, rp.vault_key, key)

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

    async def read(self, rp: RecoveryPointRow, name: str | None = None) -> AsyncIterator[bytes]:
        """A file of the point (its only or first file by default), streamed; format 2 checks every
        chunk as it goes (PointDamagedError). Callers check the whole file's SHA-256 too."""
        if vault_format.format_of(rp.object_key) == 1:
            async for chunk in self.datastore.get(rp.object_key):
                yield chunk
            return
        manifest = await self.manifest(rp)
        assert isinstance(manifest, PointManifest)
        entry = next((f for f in manifest.files if f.name == name), None) if name else manifest.files[0]
        if entry is None:
            raise PointDamagedError(rp.id, f"it holds no file {name!r}")
        reader = await self._reader(rp)
        try:
            async for chunk in reader.read_file(entry):
                yield chunk
        except ChunkDamagedError as exc:
            raise PointDamagedError(rp.id, f"{entry.name}: {exc}") from None

    async def reusable_files(self, instance_key: str) -> dict[str, FileEntry]:
        """The files of the instance's newest point that a source recorded a version of and whose
        chunks the vault's index still holds: what the next backup may reuse unread (call it once the
        backup's own point is ``writing``, which keeps garbage collection away). Empty when there is
        no such point or its manifest cannot be read (the next backup then reads everything)."""
        async with self.store.read() as tx:
            newest = await tx.recovery_points_of(instance_key, limit=1)
        if not newest or vault_format.format_of(newest[0].object_key) == 1:
            return {}
        try:
            manifest = await self.check_manifest(newest[0])
        except (PointDamagedError, SealError, vault_format.UnsupportedFormatError, DpvaultError):
            return {}
        assert isinstance(manifest, PointManifest)
        entries = {f.name: f for f in manifest.files if f.version is not None}
        wanted = sorted({c for f in entries.values() for c in f.chunks})
        known: set[str] = set()
        async with self.store.read() as tx:
            for start in range(0, len(wanted), 500):
                known |= await tx.known_chunks(newest[0].vault_key, wanted[start : start + 500])
        return {name: f for name, f in entries.items() if all(c in known for c in f.chunks)}

    async def opened(self, rp: RecoveryPointRow) -> tuple[PointManifest, PointReader]:
        """A format-2 point's checked manifest and a reader of its files (for restores that read many
        files: the manifest is opened once)."""
        manifest = await self.check_manifest(rp)
        if not isinstance(manifest, PointManifest):
            raise PointDamagedError(rp.id, "a format-1 point holds a single archive")
        return manifest, await self._reader(rp)

    async def check_manifest(self, rp: RecoveryPointRow) -> Manifest | PointManifest:
        """The point's manifest, read (refusing a format this version cannot read) and matched with
        its row -- what readers check before the bytes they then check as they go."""
        manifest = await self.manifest(rp)
        if (manifest.size, manifest.sha256) != (rp.size, rp.sha256):
            raise PointDamagedError(rp.id, "corrupt: the manifest does not match the recovery point")
        return manifest

    @contextlib.asynccontextmanager
    async def local_copy(self, rp: RecoveryPointRow) -> AsyncIterator[Path]:
        """A seekable local file holding the point's (first) file, checked whole against what was
        recorded before the context is entered (PointDamagedError otherwise), for ``pg_restore
        --jobs``: format 1 is verified, then (on a local store) the object itself; format 2 is
        rebuilt into ``tmp_dir``, every chunk and the whole file checked on the way: one pass."""
        if vault_format.format_of(rp.object_key) == 1:
            await self.verify(rp)
            async with self.datastore.local_copy(rp.object_key) as path:
                yield path
            return
        await self.check_manifest(rp)
        base = self.tmp_dir or Path(os.environ.get("TMPDIR", "/tmp"))  # noqa: S108 - a private name below
        await asyncio.to_thread(base.mkdir, parents=True, exist_ok=True, mode=0o700)
        path = base / f"restore-{uuid.uuid4().hex}.dump"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                async for chunk in self.read(rp):
                    await asyncio.to_thread(out.write, chunk)
            yield path
        finally:
            path.unlink(missing_ok=True)

    # -- sweeping --------------------------------------------------------------------------------

    async def sweep(self, *, incomplete_only: bool = False) -> int:
        """Remove incomplete writes of dead writers and (unless ``incomplete_only``) points being
        written by jobs that have ended, objects no row refers to, and the garbage of vaults whose
        points were deleted. Safe at any time, from any process. Returns how many things went."""
        removed = await self.datastore.sweep_incomplete(older_than=self.grace)
        if not incomplete_only:
            removed += await self._sweep_intents()
            removed += await self._sweep_deleting()
            removed += await self._sweep_unreferenced()
            for collected in await self.collect_garbage():
                removed += collected.packs_deleted + collected.packs_repacked + collected.orphans_deleted
        if removed:
            log.info("vault sweep", removed=removed)
        return removed

    async def collect_garbage(
        self, vault_keys: Sequence[str] | None = None, *, wait: float = 0.0
    ) -> list[Collected]:
        """Collect the garbage of ``vault_keys`` (default: every vault whose points were deleted since
        its last collection). A vault another collection holds is retried for up to ``wait`` seconds
        (collections are short); one whose backup is writing is left for the next sweep at once."""
        if vault_keys is None:
            async with self.store.read() as tx:
                vault_keys = await tx.dirty_vaults()
        done = []
        for vault_key in vault_keys:
            deadline = time.monotonic() + wait
            while (result := await self.collector.collect(vault_key, delete=self._delete_key)) is None:
                if time.monotonic() >= deadline or await self._writing(vault_key):
                    break
                await asyncio.sleep(0.2)
            if result is not None:
                done.append(result)
        return done

    async def _writing(self, vault_key: str) -> bool:
        async with self.store.read() as tx:
            return any(rp.vault_key == vault_key for rp in await tx.recovery_points_in_state(WRITING))

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

    async def _sweep_deleting(self) -> int:
        """Finish deletions that did not (a crash, a store that refused): points marked ``deleting``,
        and the data of vaults that are gone. Repeating a deletion someone else is doing is harmless."""
        async with self.store.read() as tx:
            deleting = await tx.recovery_points_in_state(DELETING)
            gone = await tx.vaults_gone()
        points = [rp for rp in deleting if rp.vault_key not in gone]
        if points:
            await self.purge(points)
        if gone:
            await self.delete_vaults(gone)
        return len(points) + len(gone)

    async def _sweep_unreferenced(self) -> int:
        """Objects of format 1 and format-2 manifests no row refers to (packs are the collector's)."""
        async with self.store.read() as tx:
            keys = await tx.all_recovery_point_keys()
        referenced = {key for archive in keys for key in vault_format.keys_of(archive)}
        cutoff = time.time() - self.grace
        stale = [
            info.key
            async for info in self.datastore.list()
            if info.key not in referenced and info.modified < cutoff and _owned_by_points(info.key)
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


def _owned_by_points(key: str) -> bool:
    """Objects that belong to one point (format 1 archives and manifests, format 2 manifests); not
    packs or data keys, which their vault owns."""
    parts = key.split("/")
    return not (len(parts) > 1 and parts[1] in ("packs", "keys"))


def _writer_of(rp: RecoveryPointRow) -> str | None:
    writer = msgspec.json.decode(rp.details).get("job") if rp.details else None
    return writer if isinstance(writer, str) else None

"""Garbage collection of format-2 vaults: mark and sweep, under the vault's maintenance lease.

Packs are shared by recovery points, so deleting a point deletes only its manifest and marks the
vault dirty; collection then frees what no remaining point needs:

1. take the vault's maintenance lease -- only while no backup of the vault is writing, and no
   backup starts writing while it is held (``RecoveryPoints.intend`` waits), so no chunk gains a
   reference during collection;
2. mark: the chunks every remaining point's manifest lists are live;
3. sweep each pack: none of its indexed chunks live -> the pack object and its index entries go;
   less than half of its bytes live -> its live chunks are copied, still sealed, into new packs,
   re-indexed, and the old pack goes. A pack under an object lock (``retain_until``) is neither
   deleted nor repacked before its date;
4. pack objects the index does not know (their writer died before recording them) go once older
   than the grace period.

Readers need no lease: a point being restored is not deleted (retention and deletes refuse while a
restore runs), so its chunks stay live, and a reader whose pack was repacked under it looks the
chunk up again (``PointReader``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass

import structlog

from dpvault.datastores.base import Datastore
from dpvault.store import Store
from dpvault.vault import format as vault_format
from dpvault.vault.keys import VaultKeys
from dpvault.vault.packs import PackWriter

log = structlog.get_logger("dpvault.gc")

REPACK_BELOW = 0.5  # a pack with less than this fraction of its bytes live is repacked


@dataclass
class Collected:
    packs_deleted: int = 0
    packs_repacked: int = 0
    packs_written: int = 0
    bytes_freed: int = 0
    locked_kept: int = 0
    orphans_deleted: int = 0


class Collector:
    def __init__(
        self, store: Store, datastore: Datastore, keys: VaultKeys, *, lease: float, grace: float
    ) -> None:
        self.store = store
        self.datastore = datastore
        self.keys = keys
        self.lease = lease
        self.grace = grace
        self.owner = f"gc-{uuid.uuid4().hex[:12]}"

    async def collect(self, vault_key: str, *, delete: object) -> Collected | None:
        """Collect one vault's garbage; None when its lease is taken or a backup is writing (try
        later). ``delete(key)``: how an object is removed (the recovery points' owner's)."""
        started = time.time()
        got = await self.store.transact(
            lambda tx: tx.acquire_maintenance(vault_key, self.owner, now=started, until=started + self.lease)
        )
        if not got:
            return None
        keeper = asyncio.create_task(self._keep(vault_key))
        try:
            result = await self._collect(vault_key, delete)
            await self.store.transact(lambda tx: tx.clean(vault_key, before=started))
        finally:
            keeper.cancel()
            with contextlib.suppress(Exception):
                await self.store.transact(lambda tx: tx.release_maintenance(vault_key, self.owner))
        if result.packs_deleted or result.packs_repacked or result.orphans_deleted:
            log.info("vault garbage collected", vault=vault_key, **result.__dict__)
        return result

    async def _keep(self, vault_key: str) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            now = time.time()
            with contextlib.suppress(Exception):
                await self.store.transact(
                    lambda tx, now=now: tx.acquire_maintenance(
                        vault_key, self.owner, now=now, until=now + self.lease
                    )
                )

    async def live_chunks(self, vault_key: str) -> set[str]:
        """Every chunk a remaining format-2 point of the vault lists."""
        async with self.store.read() as tx:
            points = await tx.recovery_points_in_vault(vault_key)
        live: set[str] = set()
        if not any(vault_format.format_of(rp.object_key) == 2 for rp in points):
            return live
        key = await self.keys.data_key(vault_key, now=time.time())
        for rp in points:
            if vault_format.format_of(rp.object_key) != 2 or rp.state == "deleting":
                continue
            found = vault_format.envelope(await vault_format.read_object(self.datastore, rp.object_key))
            manifest = vault_format.open_manifest(found, key, rp.id)
            for entry in manifest.files:
                live.update(entry.chunks)
        return live

    async def _collect(self, vault_key: str, delete: object) -> Collected:
        result = Collected()
        live = await self.live_chunks(vault_key)
        async with self.store.read() as tx:
            packs = await tx.packs_of_vault(vault_key)
        now = time.time()
        repack: list[tuple[str, list[tuple[str, int, int, int]]]] = []
        for pack in packs:
            pack_id = pack["pack_id"]
            async with self.store.read() as tx:
                entries = await tx.chunks_of_pack(vault_key, pack_id)
            kept = [e for e in entries if e[0] in live]
            locked = (pack["retain_until"] or 0) > now
            if locked and (not kept or sum(e[2] for e in kept) < REPACK_BELOW * pack["size"]):
                result.locked_kept += 1
                continue
            if not kept:
                await self._drop(vault_key, pack_id, pack["size"], delete, result)
                result.packs_deleted += 1
            elif sum(e[2] for e in kept) < REPACK_BELOW * pack["size"]:
                repack.append((pack_id, kept))
        if repack:
            await self._repack(vault_key, repack, {p["pack_id"]: p["size"] for p in packs}, delete, result)
        await self._orphans(vault_key, {p["pack_id"] for p in packs}, delete, result)
        return result

    async def _drop(self, vault_key: str, pack_id: str, size: int, delete: object, result: Collected) -> None:
        await self.store.transact(
            lambda tx: tx.delete_pack(vault_key, pack_id)
        )  # index first: no reader finds it
        await delete(vault_format.pack_key(vault_key, pack_id))  # type: ignore[operator]
        result.bytes_freed += size

    async def _repack(
        self,
        vault_key: str,
        repack: list[tuple[str, list[tuple[str, int, int, int]]]],
        sizes: dict[str, int],
        delete: object,
        result: Collected,
    ) -> None:
        key = await self.keys.data_key(vault_key, now=time.time())
        # The live chunks, still sealed, into new packs; each new pack is recorded with its chunks'
        # index entries pointed at it in one transaction, so no chunk is ever unindexed.
        writer = PackWriter(
            self.store, self.datastore, vault_key, key, writer=self.owner, dedupe=False, rehome=True
        )
        for pack_id, kept in repack:
            path = vault_format.pack_key(vault_key, pack_id)
            for chunk_id, offset, length, raw in kept:
                sealed = await self.datastore.get_range(path, offset, length)
                await writer.add_sealed(chunk_id, sealed, raw)
        written = await writer.finish()
        result.packs_written += written.packs
        for pack_id, _ in repack:
            await self._drop(vault_key, pack_id, sizes[pack_id], delete, result)
            result.packs_repacked += 1

    async def _orphans(self, vault_key: str, known: set[str], delete: object, result: Collected) -> None:
        cutoff = time.time() - self.grace
        prefix = vault_format.packs_prefix(vault_key)
        async for info in self.datastore.list(prefix):
            pack_id = info.key.rsplit("/", 1)[-1].removesuffix(".pack")
            if pack_id not in known and info.modified < cutoff:
                async with self.store.read() as tx:
                    if await tx.pack_exists(vault_key, pack_id):
                        continue  # recorded since the listing began
                await delete(info.key)  # type: ignore[operator]
                result.orphans_deleted += 1

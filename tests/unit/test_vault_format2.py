"""Vault format 2 on real parts (SQLite state, the in-memory datastore): chunks stored once per
vault, sealed so nothing readable reaches the store, checked when read, collected when nothing uses
them, never while a backup writes, never past an object lock (docs/design/vault-format.md)."""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from dpvault.datastores import MemoryDatastore
from dpvault.store import RecoveryPointRow, ResourceRow, Store
from dpvault.vault import format as vault_format
from dpvault.vault.format import PointManifest
from dpvault.vault.keys import KekRef, KeyUnavailableError, VaultKeys
from dpvault.vault.packs import PACK_TARGET
from dpvault.vault.points import PointDamagedError, RecoveryPoints

VAULT = "/subscriptions/s/resourcegroups/rg/providers/microsoft.dataprotection/backupvaults/v"
INSTANCE = f"{VAULT}/backupinstances/bi"
MARKER = b"dpvault-marker-7f3a9c1e2b"


class KeyStore:
    """Stored keys by (uri, tenant), as ``dpvault keys set`` keeps them."""

    def __init__(self) -> None:
        self.keys: dict[tuple[str, str], str] = {}

    async def get(self, uri: str, tenant: str) -> str | None:
        return self.keys.get((uri, tenant))


def _instance() -> ResourceRow:
    return ResourceRow(
        pk=1, key=INSTANCE, kind="backupInstances", subscription="s", rg_key="rg", parent_key=VAULT, name="bi",
        body=b"{}", state="Succeeded", active_operation=None, revision=1, created_at=1.0, updated_at=1.0,
    )  # fmt: skip


def _data(size: int, seed: int) -> bytearray:
    rng = random.Random(seed)
    # compressible but not trivially so: words from a small vocabulary, like table data
    words = [
        bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9)))
        for _ in range(4000)
    ]
    out = bytearray()
    while len(out) < size:
        out += b" ".join(rng.choice(words) for _ in range(64)) + b"\n"
    return out[:size]


async def _stream(data: bytes, piece: int = 1 << 20) -> AsyncIterator[bytes]:
    for start in range(0, len(data), piece):
        yield bytes(data[start : start + piece])


class Vault:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.datastore = MemoryDatastore(heartbeat=0.2)
        self.kek = os.urandom(32)
        self.stored = KeyStore()

    async def open(self) -> Vault:
        self.store = await Store.open(f"sqlite:///{self.tmp_path / 'state.db'}")
        self.keys = VaultKeys(self.store, self.datastore, self.kek, self.stored)
        self.points = RecoveryPoints(
            self.store, self.datastore, grace=1.0, keys=self.keys, tmp_dir=self.tmp_path / "tmp"
        )
        return self

    async def backup(
        self, data: bytes, *, want: KekRef | None = None, retain_until: float | None = None
    ) -> tuple[RecoveryPointRow, Any]:
        """What the backup pipeline does, minus the engine: intend, chunks into packs, manifest, commit."""
        rp_id, job = str(uuid.uuid4()), str(uuid.uuid4())
        key = vault_format.point_manifest_key(VAULT, INSTANCE, rp_id)
        await self.points.intend(
            rp_id=rp_id, instance=_instance(), archive=key, job=job, taken_at=time.time(), now=time.time()
        )
        writer = self.points.writer(VAULT, job=job, want=want, now=time.time(), retain_until=retain_until)
        entry = await writer.add_file("database.dump", _stream(data))
        written = await writer.finish()
        manifest = PointManifest(recoveryPointId=rp_id, instance=INSTANCE, engine="test", files=[entry])
        await self.points.write_manifest(writer, key, manifest)
        await self.store.transact(
            lambda tx: self.points.commit(
                tx, rp_id, size=manifest.size, sha256=manifest.sha256, tag="Default"
            )
        )
        async with self.store.read() as tx:
            rp = await tx.recovery_point(rp_id)
        assert rp is not None
        return rp, written

    async def read(self, rp: RecoveryPointRow) -> bytes:
        return b"".join([c async for c in self.points.read(rp)])

    async def delete(self, rp: RecoveryPointRow) -> None:
        await self.store.transact(lambda tx: self.points.retire(tx, [rp]))
        await self.points.purge([rp])

    def objects(self) -> dict[str, bytes]:
        return {k: v[0] for k, v in self.datastore._objects.items()}

    def packs(self) -> list[str]:
        return sorted(k for k in self.objects() if k.endswith(".pack"))


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_second_backup_stores_only_what_changed_and_both_read_back(tmp_path: Path) -> None:
    async def go() -> None:
        v = await Vault(tmp_path).open()
        first = _data(12 << 20, seed=1)
        rp1, w1 = await v.backup(bytes(first))
        assert w1.reused_chunks == 0 and w1.chunks > 5 and w1.packs >= 1
        assert w1.stored_bytes < len(first) / 2  # compressed
        second = bytearray(first)
        second[6 << 20 : (6 << 20) + 200] = b"X" * 200  # a small change in the middle
        rp2, w2 = await v.backup(bytes(second))
        assert w2.reused_chunks >= w1.chunks - 3  # every chunk but those around the change
        assert w2.stored_bytes < w1.stored_bytes / 4
        assert await v.read(rp1) == first and await v.read(rp2) == second
        assert rp2.sha256 != rp1.sha256 and rp2.size == len(second)

    run(go())


def test_nothing_stored_is_readable(tmp_path: Path) -> None:
    async def go() -> None:
        v = await Vault(tmp_path).open()
        data = _data(3 << 20, seed=2)
        data[1_000_000 : 1_000_000 + len(MARKER)] = MARKER
        rp, _ = await v.backup(bytes(data))
        objects = v.objects()
        assert objects and not any(MARKER in blob for blob in objects.values())
        assert not any(b"abcdefghij"[:4] * 3 in blob for blob in objects.values())
        manifest = objects[rp.object_key]
        assert (
            b"database.dump" not in manifest and b'"format":2' in manifest
        )  # sealed, its format in the clear
        wrapped = next(blob for key, blob in objects.items() if "/keys/" in key)
        assert v.kek not in wrapped
        assert MARKER in await v.read(rp)

    run(go())


def test_a_changed_byte_in_a_pack_is_found_and_named(tmp_path: Path) -> None:
    async def go() -> None:
        v = await Vault(tmp_path).open()
        rp, _ = await v.backup(bytes(_data(4 << 20, seed=3)))
        pack = v.packs()[0]
        blob, modified = v.datastore._objects[pack]
        damaged = bytearray(blob)
        damaged[len(damaged) // 3] ^= 0x40
        v.datastore._objects[pack] = (bytes(damaged), modified)
        with pytest.raises(PointDamagedError) as found:
            await v.points.verify(rp)
        assert found.value.rp_id == rp.id and "does not authenticate" in found.value.problem
        await v.points.verify(rp, quick=True)  # existence only: still all there
        del v.datastore._objects[pack]
        with pytest.raises(PointDamagedError, match="missing"):
            await v.points.verify(rp, quick=True)

    run(go())


def test_collection_frees_what_no_point_uses_keeps_the_rest_and_repacks(tmp_path: Path) -> None:
    async def go() -> None:
        v = await Vault(tmp_path).open()
        shared = bytes(_data(3 * PACK_TARGET, seed=4))
        own = bytes(_data(2 * PACK_TARGET, seed=5))
        rp1, _ = await v.backup(own + shared)
        rp2, _ = await v.backup(shared + bytes(_data(PACK_TARGET // 2, seed=6)))
        before = v.packs()
        await v.delete(rp1)
        (collected,) = await v.points.collect_garbage()
        assert collected.packs_deleted + collected.packs_repacked >= 1 and collected.bytes_freed > 0
        assert len(v.packs()) < len(before) + collected.packs_written
        assert await v.read(rp2) == shared + bytes(_data(PACK_TARGET // 2, seed=6))
        await v.points.verify(rp2)
        assert await v.points.collect_garbage() == []  # clean now: nothing to do
        await v.delete(rp2)
        await v.points.collect_garbage()
        assert v.packs() == []  # the last point gone, every pack went

    run(go())


def test_collection_waits_for_a_writing_backup_and_a_backup_for_collection(tmp_path: Path) -> None:
    async def go() -> None:
        v = await Vault(tmp_path).open()
        rp, _ = await v.backup(bytes(_data(2 << 20, seed=7)))
        await v.delete(rp)
        # a backup is writing: no collection
        await v.points.intend(
            rp_id="w1", instance=_instance(), archive="x/points/y/w1.manifest", job="j", taken_at=1, now=1
        )
        assert await v.points.collect_garbage() == []
        assert v.packs() != []
        await v.points.abandon("w1", "x/points/y/w1.manifest")
        assert len(await v.points.collect_garbage()) == 1 and v.packs() == []
        # a collection holds the vault: a backup waits until it is released
        assert await v.store.transact(
            lambda tx: tx.acquire_maintenance(VAULT, "gc", now=time.time(), until=time.time() + 60)
        )
        started = asyncio.create_task(
            v.points.intend(
                rp_id="w2", instance=_instance(), archive="x/points/y/w2.manifest", job="j", taken_at=1, now=1
            )
        )
        await asyncio.sleep(1.2)
        assert not started.done()
        await v.store.transact(lambda tx: tx.release_maintenance(VAULT, "gc"))
        await asyncio.wait_for(started, 10)

    run(go())


def test_a_pack_under_an_object_lock_is_not_collected_before_its_date(tmp_path: Path) -> None:
    async def go() -> None:
        v = await Vault(tmp_path).open()
        rp, _ = await v.backup(bytes(_data(2 << 20, seed=8)), retain_until=time.time() + 3600)
        (pack_key,) = v.packs()
        await v.delete(rp)
        (collected,) = await v.points.collect_garbage()
        assert collected.locked_kept == 1 and v.packs() == [pack_key]

    run(go())


def test_data_keys_are_wrapped_by_the_kek_the_vault_names(tmp_path: Path) -> None:
    async def go() -> None:
        v = await Vault(tmp_path).open()
        uri = "https://cmk.vault.azure.net/keys/k1"
        import base64

        v.stored.keys[(uri, "t1")] = base64.b64encode(os.urandom(32)).decode()
        rp, _ = await v.backup(bytes(_data(1 << 20, seed=9)), want=KekRef(uri, "t1"))
        async with v.store.read() as tx:
            record = (await tx.vault_key_record(VAULT))[1]
        assert uri.encode() in record  # wrapped by the customer-managed key
        data = await v.read(rp)
        # a process that has lost the stored key cannot read the vault, and says which key it needs
        del v.stored.keys[(uri, "t1")]
        fresh = VaultKeys(v.store, v.datastore, v.kek, v.stored)
        with pytest.raises(KeyUnavailableError, match="k1"):
            await fresh.data_key(VAULT, now=time.time())
        # with a wrong local KEK, the error names the mismatch (not a garbled read)
        other = VaultKeys(v.store, v.datastore, os.urandom(32), None)
        with sqlite3.connect(tmp_path / "state.db") as db:
            db.execute("DELETE FROM vault_keys")
        await other.data_key(VAULT, now=time.time())  # a new vault key, for a new vault
        assert data

    run(go())

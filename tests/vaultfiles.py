"""What a test server's vault store holds, read the way dpvault reads it (tests only).

Format 2 seals everything, so tests that look at a point's bytes read them through dpvault's own
reader, with the server's data dir (its key-encryption key) and state database. The ``*_files``
helpers look at a local vault directory; the others work on every store (local, Azure, S3) through
the Datastore port, opened from the server's ``--vault-store`` and environment."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from dpvault.arm import ids
from dpvault.datastores import Datastore
from dpvault.datastores.base import put_bytes, read_bytes
from dpvault.datastores.urls import open_datastore
from dpvault.secrets.local import LocalSecretStore, load_key
from dpvault.settings import Settings
from dpvault.store import Store
from dpvault.vault import format as vault_format
from dpvault.vault.keys import VaultKeys, load_local_kek
from dpvault.vault.points import RecoveryPoints
from tests.support import Server


def _settings(server: Server) -> Settings:
    return Settings(data_dir=server.data_dir, database_url=server.database_url)


def datastore_of(server: Server) -> Datastore:
    """The server's vault store, opened as the server opens it."""
    return open_datastore(
        server.vault_store,
        data_dir_default=server.data_dir / "vault",
        heartbeat=5.0,
        environ={**os.environ, **server.environ},
    )


async def _with_points(server: Server, work: Any) -> Any:
    settings = _settings(server)
    store = await Store.open(settings.resolved_database_url, migrate=False)
    try:
        datastore = datastore_of(server)
        keys = VaultKeys(
            store,
            datastore,
            load_local_kek(settings.identity_dir),
            LocalSecretStore(store, load_key(settings.identity_dir)),
        )
        return await work(RecoveryPoints(store, datastore, grace=60, keys=keys), store)
    finally:
        await store.close()


def read_point(server: Server, rp_id: str) -> bytes:
    """A recovery point's (first) file, as a restore would read it (every chunk checked)."""

    async def work(points: RecoveryPoints, store: Store) -> bytes:
        async with store.read() as tx:
            rp = await tx.recovery_point(rp_id)
        assert rp is not None, rp_id
        return b"".join([chunk async for chunk in points.read(rp)])

    return asyncio.run(_with_points(server, work))


def vault_root(server: Server) -> Path:
    return server.data_dir / "vault"


def vault_dir(server: Server, vault_path: str) -> Path:
    """The directory of one vault (``vault_path``: its ARM id) in the server's local vault store."""
    return vault_root(server) / vault_format.vault_prefix(ids.key(vault_path))


def pack_files(server: Server, vault_path: str | None = None) -> list[Path]:
    root = vault_dir(server, vault_path) if vault_path else vault_root(server)
    return sorted(p for p in root.rglob("*.pack") if p.is_file())


def unreferenced_packs(server: Server, vault_path: str) -> list[str]:
    """Packs of the vault that hold no chunk a remaining point lists (garbage not yet collected)."""
    vault_key = ids.key(vault_path)

    stored = {key.rsplit("/", 1)[-1].removesuffix(".pack") for key in pack_keys(server, vault_path)}

    async def work(points: RecoveryPoints, store: Store) -> list[str]:
        live = await points.collector.live_chunks(vault_key)
        async with store.read() as tx:
            packs = await tx.packs_of_vault(vault_key)
            out = []
            for pack in packs:
                entries = await tx.chunks_of_pack(vault_key, pack["pack_id"])
                if not any(e[0] in live for e in entries):
                    out.append(pack["pack_id"])
        return sorted(set(out) | (stored - {p["pack_id"] for p in packs}))

    return asyncio.run(_with_points(server, work))


def flip_a_byte_in_each_pack(server: Server, vault_path: str) -> int:
    """Change one byte in the middle of every pack of the vault (its sealed chunks); how many packs."""
    packs = pack_files(server, vault_path)
    for pack in packs:
        data = bytearray(pack.read_bytes())
        data[len(data) // 2] ^= 0x01
        pack.write_bytes(bytes(data))
    return len(packs)


def object_keys(server: Server, prefix: str = "") -> list[str]:
    """Every object in the server's vault store (under ``prefix``)."""

    async def work() -> list[str]:
        return sorted([info.key async for info in datastore_of(server).list(prefix)])

    return asyncio.run(work())


def stored_bytes(server: Server) -> int:
    """What the server's vault store holds, in bytes (every object)."""

    async def work() -> int:
        return sum([info.size async for info in datastore_of(server).list("")])

    return asyncio.run(work())


def pack_keys(server: Server, vault_path: str | None = None) -> list[str]:
    """The pack objects of one vault (or of all), in any store."""
    prefix = vault_format.vault_prefix(ids.key(vault_path)) if vault_path else ""
    return [key for key in object_keys(server, prefix) if key.endswith(".pack")]


def raw_objects(server: Server) -> list[bytes]:
    """Every object's bytes as the store holds them."""

    async def work() -> list[bytes]:
        store = datastore_of(server)
        return [await read_bytes(store, info.key, limit=1 << 30) async for info in store.list("")]

    return asyncio.run(work())


def flip_a_byte_in_each_stored_pack(server: Server, vault_path: str) -> int:
    """Change one byte in the middle of every pack of the vault, in any store; how many packs."""

    keys = pack_keys(server, vault_path)

    async def work() -> int:
        store = datastore_of(server)
        for key in keys:
            data = bytearray(await read_bytes(store, key, limit=1 << 30))
            data[len(data) // 2] ^= 0x01
            await put_bytes(store, key, bytes(data))
        return len(keys)

    return asyncio.run(work())

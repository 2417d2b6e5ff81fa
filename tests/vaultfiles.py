"""What a test server's local vault holds, read the way dpvault reads it (tests only).

Format 2 seals everything, so tests that look at a point's bytes read them through dpvault's own
reader, with the server's data dir (its key-encryption key) and state database."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from dpvault.arm import ids
from dpvault.datastores import LocalDatastore
from dpvault.secrets.local import LocalSecretStore, load_key
from dpvault.settings import Settings
from dpvault.store import Store
from dpvault.vault import format as vault_format
from dpvault.vault.keys import VaultKeys, load_local_kek
from dpvault.vault.points import RecoveryPoints
from tests.support import Server


def _settings(server: Server) -> Settings:
    return Settings(data_dir=server.data_dir, database_url=server.database_url)


async def _with_points(server: Server, work: Any) -> Any:
    settings = _settings(server)
    store = await Store.open(settings.resolved_database_url, migrate=False)
    try:
        datastore = LocalDatastore(settings.vault_store_dir)
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

    async def work(points: RecoveryPoints, store: Store) -> list[str]:
        live = await points.collector.live_chunks(vault_key)
        async with store.read() as tx:
            packs = await tx.packs_of_vault(vault_key)
            out = []
            for pack in packs:
                entries = await tx.chunks_of_pack(vault_key, pack["pack_id"])
                if not any(e[0] in live for e in entries):
                    out.append(pack["pack_id"])
        on_disk = {p.stem for p in pack_files(server, vault_path)}
        return sorted(set(out) | (on_disk - {p["pack_id"] for p in packs}))

    return asyncio.run(_with_points(server, work))


def flip_a_byte_in_each_pack(server: Server, vault_path: str) -> int:
    """Change one byte in the middle of every pack of the vault (its sealed chunks); how many packs."""
    packs = pack_files(server, vault_path)
    for pack in packs:
        data = bytearray(pack.read_bytes())
        data[len(data) // 2] ^= 0x01
        pack.write_bytes(bytes(data))
    return len(packs)

"""The vault's sweep removes dead staging files and unreferenced objects, and leaves alone files
dpvault never writes (an NFS .nfs* placeholder, an operator's note) instead of failing.

(Moved from tests/unit/test_datastore.py: the sweep of unreferenced objects belongs to the one owner
of recovery points, ``vault/points.py``, which knows the rows; the datastore lists and deletes.)"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from dpvault.datastores import LocalDatastore
from dpvault.datastores.base import put_bytes
from dpvault.store import Store
from dpvault.vault import format as vault_format
from dpvault.vault.keys import VaultKeys
from dpvault.vault.points import RecoveryPoints


def _row(rp_id: str, key: str, state: str = "available") -> dict[str, object]:
    return {
        "id": rp_id, "instance_key": "i", "vault_key": "v", "time": 1.0, "tag": "Default", "rule_name": "r",
        "policy_name": "p", "policy_version": "1.0", "data_store": "VaultStore", "object_key": key, "size": 4,
        "sha256": "x", "expiry": None, "details": b"{}", "state": state, "created_at": 1.0,
    }  # fmt: skip


async def _vault(store: Store) -> None:
    """The vault resource the points belong to (the sweep purges data of vaults that are gone)."""
    await store.transact(
        lambda tx: tx.insert_resource(
            key="v", kind="backupVaults", subscription="s", rg_key="rg", parent_key="rg", name="v", body=b"{}",
            state="Succeeded", active_operation=None, revision=1, created_at=1.0, updated_at=1.0,
        )
    )  # fmt: skip


def test_sweep_ignores_files_that_are_not_objects(tmp_path: Path) -> None:
    async def go() -> None:
        store = await Store.open(f"sqlite:///{tmp_path / 'state.db'}")
        await _vault(store)
        datastore = LocalDatastore(tmp_path / "vault")
        points = RecoveryPoints(
            store, datastore, grace=60, keys=VaultKeys(store, datastore, os.urandom(32), None)
        )
        await put_bytes(datastore, "v/i/kept.dump", b"kept")
        await put_bytes(datastore, "v/i/orphan.dump", b"orphan")
        await store.transact(lambda tx: tx.insert_recovery_point(**_row("rp1", "v/i/kept.dump")))
        strays = [datastore.root / "v" / "i" / ".nfs0000123", datastore.root / "README for Operators.txt"]
        for stray in strays:
            stray.write_text("not an object")
        old = time.time() - 3600
        for path in [*strays, datastore.root / "v/i/kept.dump", datastore.root / "v/i/orphan.dump"]:
            os.utime(path, (old, old))
        assert sorted([o.key async for o in datastore.list()]) == ["v/i/kept.dump", "v/i/orphan.dump"]
        removed = await points.sweep()
        assert removed == 1
        assert (
            await datastore.stat("v/i/kept.dump") is not None
            and await datastore.stat("v/i/orphan.dump") is None
        )
        assert all(stray.exists() for stray in strays)
        await store.close()

    asyncio.run(go())


def test_sweep_removes_what_a_backup_job_that_ended_was_writing(tmp_path: Path) -> None:
    """A point row still ``writing`` whose job has ended (or is unknown) was left by a crash: its
    objects and row go; one whose job still runs stays, however old its objects are."""

    async def go() -> None:
        store = await Store.open(f"sqlite:///{tmp_path / 'state.db'}")
        await _vault(store)
        datastore = LocalDatastore(tmp_path / "vault")
        points = RecoveryPoints(
            store, datastore, grace=60, keys=VaultKeys(store, datastore, os.urandom(32), None)
        )

        async def setup(tx):  # type: ignore[no-untyped-def]
            for job, status in (("job-done", "Failed"), ("job-live", "InProgress")):
                await tx.insert_backup_job(
                    id=job, vault_key="v", instance_key="i", operation="Backup", category="Backup", status=status,
                    user_triggered=False, start_time=1.0, end_time=None, bytes=None, info=b"{}", error=None,
                    recovery_point_id=None,
                )  # fmt: skip
            for rp_id, job in (("rp-dead", "job-done"), ("rp-live", "job-live"), ("rp-lost", "job-unknown")):
                await tx.insert_recovery_point(
                    **{
                        **_row(rp_id, f"v/i/{rp_id}.dump", "writing"),
                        "details": f'{{"job": "{job}"}}'.encode(),
                    }
                )

        await store.transact(setup)
        for rp_id in ("rp-dead", "rp-live", "rp-lost"):
            await put_bytes(datastore, f"v/i/{rp_id}.dump", b"data")
            old = time.time() - 3600
            os.utime(datastore.root / f"v/i/{rp_id}.dump", (old, old))
        assert await points.sweep() == 2
        assert sorted([o.key async for o in datastore.list()]) == ["v/i/rp-live.dump"]
        async with store.read() as tx:
            assert [rp.id for rp in await tx.recovery_points_in_state("writing")] == ["rp-live"]
        await store.close()

    asyncio.run(go())


def test_sweep_finishes_deletions_that_did_not_finish(tmp_path: Path) -> None:
    """Points left ``deleting`` (a crash, a store that refused) and data of a vault that is gone (its
    resource group's purge did not finish) are deleted by the sweep: objects, then rows."""

    async def go() -> None:
        store = await Store.open(f"sqlite:///{tmp_path / 'state.db'}")
        await _vault(store)
        datastore = LocalDatastore(tmp_path / "vault")
        points = RecoveryPoints(
            store, datastore, grace=60, keys=VaultKeys(store, datastore, os.urandom(32), None)
        )
        await put_bytes(datastore, "v/i/stuck.dump", b"x")
        await put_bytes(datastore, "v/i/kept.dump", b"k")
        gone_dir = vault_format.vault_prefix("gone")
        await put_bytes(datastore, f"{gone_dir}/i/old.dump", b"old")

        async def rows(tx):  # type: ignore[no-untyped-def]
            await tx.insert_recovery_point(**_row("stuck", "v/i/stuck.dump", "deleting"))
            await tx.insert_recovery_point(**_row("kept", "v/i/kept.dump"))
            await tx.insert_recovery_point(**{**_row("old", f"{gone_dir}/i/old.dump"), "vault_key": "gone"})

        await store.transact(rows)
        await points.sweep()
        assert sorted([o.key async for o in datastore.list()]) == ["v/i/kept.dump"]
        async with store.read() as tx:
            assert [rp.id for rp in await tx.recovery_points_in_vaults(["v", "gone"])] == ["kept"]
        await store.close()

    asyncio.run(go())

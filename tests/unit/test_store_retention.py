"""Retention never deletes a recovery point that a running restore (or drill) reads, nor the points
of a stopped instance; it does delete them once the restore has finished."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec

from dpvault.store import Store


def _point(rp_id: str, instance: str, expiry: float) -> dict:
    return {
        "id": rp_id, "instance_key": instance, "vault_key": "v", "time": 1.0, "tag": "Default", "rule_name": "r",
        "policy_name": "p", "policy_version": "1.0", "data_store": "VaultStore", "object_key": f"x/{rp_id}.dump",
        "size": 1, "sha256": "0" * 64, "expiry": expiry, "details": b"{}", "state": "available", "created_at": 1.0,
    }  # fmt: skip


def _job(job_id: str, rp_id: str, status: str) -> dict:
    return {
        "id": job_id, "vault_key": "v", "instance_key": "i1", "operation": "Restore", "category": "Restore",
        "status": status, "user_triggered": True, "start_time": 1.0, "end_time": None, "bytes": None,
        "info": msgspec.json.encode({}), "error": None, "recovery_point_id": rp_id,
    }  # fmt: skip


def test_expired_points_in_use_or_of_stopped_instances_are_kept(tmp_path: Path) -> None:
    async def run() -> None:
        store = await Store.open(f"sqlite:///{tmp_path / 'state.db'}")

        async def setup(tx) -> None:  # type: ignore[no-untyped-def]
            await tx.insert_recovery_point(**_point("rp-free", "i1", 10.0))
            await tx.insert_recovery_point(**_point("rp-restoring", "i1", 10.0))
            await tx.insert_recovery_point(**_point("rp-stopped", "i2", 10.0))
            await tx.insert_recovery_point(**_point("rp-future", "i1", 1000.0))
            await tx.insert_backup_job(**_job("job-1", "rp-restoring", "InProgress"))
            await tx.upsert_protected_item(
                "i2",
                vault_key="v",
                policy_key="p",
                state="stopped",
                next_due_at=None,
                last_occurrence=None,
                updated_at=1.0,
            )

        await store.transact(setup)
        async with store.read() as tx:
            assert [rp.id for rp in await tx.expired_recovery_points(now=100.0, limit=10)] == ["rp-free"]
            assert await tx.next_expiry() == 10.0
        await store.transact(lambda tx: tx.update_backup_job("job-1", status="Completed", end_time=50.0))
        async with store.read() as tx:
            assert sorted(rp.id for rp in await tx.expired_recovery_points(now=100.0, limit=10)) == [
                "rp-free",
                "rp-restoring",
            ]
        await store.close()

    asyncio.run(run())


def test_marking_rechecks_a_point_a_restore_started_reading_after_it_was_listed(tmp_path: Path) -> None:
    async def run() -> None:
        store = await Store.open(f"sqlite:///{tmp_path / 'state.db'}")

        async def setup(tx) -> None:  # type: ignore[no-untyped-def]
            for rp_id in ("rp-a", "rp-b", "rp-c"):
                await tx.insert_recovery_point(**_point(rp_id, "i1", 10.0))

        await store.transact(setup)
        async with store.read() as tx:
            listed = [rp.id for rp in await tx.expired_recovery_points(now=100.0, limit=10)]
        assert sorted(listed) == ["rp-a", "rp-b", "rp-c"]
        # between the listing and the mark, a restore starts reading rp-b
        await store.transact(lambda tx: tx.insert_backup_job(**_job("job-1", "rp-b", "InProgress")))
        marked = await store.transact(lambda tx: tx.mark_expired(listed, now=100.0))
        assert sorted(marked) == ["rp-a", "rp-c"]
        async with store.read() as tx:
            assert (await tx.recovery_point("rp-b")).state == "available"  # type: ignore[union-attr]
            assert (await tx.recovery_point("rp-a")).state == "deleting"  # type: ignore[union-attr]
        await store.close()

    asyncio.run(run())

"""Soft delete in the core: what happens to a soft-deleted instance's recovery points, and the purge.

A soft-deleted backup instance keeps its recovery points: their rows move (``RecoveryPoints.hold``)
under the key of the instance's deleted record, so an instance created again under the same name
starts empty, and a schedule row in state ``stopped`` pauses their retention (retention never
deletes points of a stopped item). Undelete moves them back (``release``). Once the vault's
retention days have passed (``soft_deletions.purge_at``; the manual clock moves it like any other
event), ``tick`` purges the record and its points through the one owner of recovery points:
retire (rows ``deleting``), delete the objects, forget the rows; each step may be repeated after a
crash. A soft-deleted vault holds no points (a vault with instances cannot be deleted), so its
purge only removes the record.

In an immutable vault no point may go before its expiry, the purge included: a purge that finds
unexpired points is postponed to the last expiry (for ever, for a point that never expires).
"""

from __future__ import annotations

import structlog

from dpvault.model import immutability
from dpvault.services import Services
from dpvault.store import RecoveryPointRow, SoftDeletionRow, Tx
from dpvault.types import Kind
from dpvault.vault.points import RecoveryPoints

log = structlog.get_logger("dpvault.softdelete")

BATCH = 100
STOPPED = "stopped"  # the protected-item state retention leaves alone


class SoftDeletes:
    def __init__(self, svc: Services, points: RecoveryPoints) -> None:
        self.svc = svc
        self.points = points

    async def hold(self, tx: Tx, *, instance_key: str, held_key: str, vault_key: str, policy_key: str) -> int:
        """In the caller's transaction (the one that soft-deletes the instance): no more backups,
        the points move under ``held_key`` with their retention paused. Returns how many points."""
        await tx.delete_protected_item(instance_key)
        moved = await self.points.hold(tx, instance_key, held_key)
        await tx.upsert_protected_item(
            held_key, vault_key=vault_key, policy_key=policy_key, state=STOPPED,
            last_occurrence=None, next_due_at=None, updated_at=self.svc.now(),
        )  # fmt: skip
        return moved

    async def release(
        self, tx: Tx, *, held_key: str, instance_key: str, vault_key: str, policy_key: str
    ) -> int:
        """Undelete, in the caller's transaction: the points come back to ``instance_key``, which
        is ProtectionStopped (its schedule row stopped: no backups, retention paused, as after
        stopProtection). Returns how many points."""
        await tx.delete_protected_item(held_key)
        moved = await self.points.release(tx, held_key, instance_key)
        await tx.upsert_protected_item(
            instance_key, vault_key=vault_key, policy_key=policy_key, state=STOPPED,
            last_occurrence=None, next_due_at=None, updated_at=self.svc.now(),
        )  # fmt: skip
        return moved

    async def next_purge(self) -> float | None:
        """When the next soft-deleted record is due to be purged (business time)."""
        async with self.svc.store.read() as tx:
            return await tx.next_soft_purge()

    async def tick(self) -> int:
        """Purge every record whose retention has passed; returns how many were purged."""
        async with self.svc.store.read() as tx:
            due = await tx.due_soft_deletions(now=self.svc.now(), limit=BATCH)
        purged = 0
        for record in due:
            if record.kind == Kind.INSTANCE.value:
                purged += await self._purge_instance(record)
            else:
                purged += await self.svc.store.transact(lambda tx, r=record: self._forget(tx, r))
        if purged:
            log.info("soft-deleted resources purged", count=purged)
        return purged

    async def _purge_instance(self, record: SoftDeletionRow) -> int:
        points: list[RecoveryPointRow] = []

        async def retire(tx: Tx) -> bool:
            current = await tx.soft_deletion(record.key)
            if current is None or current.purge_at > self.svc.now():
                return False  # undeleted meanwhile
            points[:] = await tx.recovery_points_of(record.key, states=("available", "deleting"))
            if immutability.is_immutable(await tx.resource(record.vault_key, lock=False)):
                kept = immutability.unexpired(points, self.svc.now())
                if kept:  # an immutable vault's points outlive the soft delete: the purge waits for them
                    until = immutability.keeps_until(kept)
                    await tx.postpone_soft_deletion(
                        record.key, purge_at=until if until is not None else float("inf")
                    )
                    return False
            await self.points.retire(tx, points)
            return True

        if not await self.svc.store.transact(retire):
            return 0
        await self.points.delete_data(points)

        async def forget(tx: Tx) -> int:
            await self.points.forget(tx, points)
            return await self._forget(tx, record)

        return await self.svc.store.transact(forget)

    async def _forget(self, tx: Tx, record: SoftDeletionRow) -> int:
        """The record itself: its row in resources, its schedule row, its soft-deletion row."""
        if await tx.soft_deletion(record.key) is None:
            return 0
        await tx.delete_protected_item(record.key)
        await tx.delete_resource(record.key)
        await tx.delete_soft_deletion(record.key)
        return 1

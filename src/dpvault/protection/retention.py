"""Retention: recovery points whose ``expiry`` has passed are deleted (data, then index), and each
run that deleted something is recorded as a Retention job of the instance.

Deletion goes through the vault's one owner of recovery points (``RecoveryPoints``): retire (mark
``deleting``, invisible to the API), delete the objects, forget the rows; each step is safe to
repeat after a crash.
"""

from __future__ import annotations

from collections import defaultdict

import structlog

from dpvault.model import backup_jobs
from dpvault.model.instances.rules import decode_instance, vault_name_of
from dpvault.services import Services
from dpvault.store import RecoveryPointRow, Tx
from dpvault.vault.points import RecoveryPoints

log = structlog.get_logger("dpvault.retention")


BATCH = 500


class Retention:
    def __init__(self, svc: Services, points: RecoveryPoints) -> None:
        self.svc = svc
        self.points = points

    async def tick(self) -> int:
        now = self.svc.now()
        async with self.svc.store.read() as tx:
            expired = await tx.expired_recovery_points(now=now, limit=BATCH)
        by_instance: dict[str, list[RecoveryPointRow]] = defaultdict(list)
        for rp in expired:
            by_instance[rp.instance_key].append(rp)
        for instance_key, points in by_instance.items():
            await self._expire(instance_key, points)
        if expired:  # what the expired points alone used goes now; shared packs, by collection
            await self.points.collect_garbage()
        return len(expired)

    async def _expire(self, instance_key: str, listed: list[RecoveryPointRow]) -> None:
        now = self.svc.now()
        points: list[RecoveryPointRow] = []

        async def mark(tx: Tx) -> str | None:
            # The instance row first: a restore starting on one of these points holds it until its
            # job is committed, so the re-check below then sees that job (PostgreSQL, READ COMMITTED).
            instance = await tx.resource(instance_key)
            marked = set(await self.points.retire_expired(tx, [rp.id for rp in listed], now=now))
            points[:] = [rp for rp in listed if rp.id in marked]
            if instance is None or not points:
                return None
            resource = decode_instance(instance.body)
            return await backup_jobs.create(
                tx, now=now, subscription=instance.subscription, vault_key=instance.parent_key,
                vault_name=vault_name_of(resource.id or ""), instance_key=instance.key,
                instance_id=resource.id, instance=resource.properties,
                operation="Retention", category="Retention", user_triggered=False,
            )  # fmt: skip

        job_id = await self.svc.store.transact(mark)
        if not points:
            return
        await self.points.delete_data(points)

        async def finish(tx: Tx) -> None:
            await self.points.forget(tx, points)
            if job_id:
                await backup_jobs.finish(
                    tx, job_id, now=self.svc.now(), status=backup_jobs.COMPLETED,
                    details={"DeletedRecoveryPoints": str(len(points)), "RecoveryPointIds": ",".join(p.id for p in points)},
                )  # fmt: skip

        await self.svc.store.transact(finish)
        log.info("retention", instance=instance_key, deleted=len(points))

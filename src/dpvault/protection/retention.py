"""Retention: recovery points whose ``expiry`` has passed are deleted (data, then index), and each
run that deleted something is recorded as a Retention job of the instance.

Deletion is three steps, each safe to repeat after a crash: mark the rows ``deleting`` (invisible
to the API), delete the objects, delete the rows.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

import structlog

from dpvault.datastores import LocalDatastore
from dpvault.datastores.local import manifest_key
from dpvault.resources.instances.rules import decode_instance
from dpvault.resources.jobs import records
from dpvault.resources.jobs.records import vault_name_of
from dpvault.services import Services
from dpvault.store import RecoveryPointRow, Tx

log = structlog.get_logger("dpvault.retention")


BATCH = 500


class Retention:
    def __init__(self, svc: Services, datastore: LocalDatastore) -> None:
        self.svc = svc
        self.datastore = datastore

    async def tick(self) -> int:
        now = self.svc.now()
        async with self.svc.store.read() as tx:
            expired = await tx.expired_recovery_points(now=now, limit=BATCH)
        by_instance: dict[str, list[RecoveryPointRow]] = defaultdict(list)
        for rp in expired:
            by_instance[rp.instance_key].append(rp)
        for instance_key, points in by_instance.items():
            await self._expire(instance_key, points)
        return len(expired)

    async def _expire(self, instance_key: str, listed: list[RecoveryPointRow]) -> None:
        now = self.svc.now()
        points: list[RecoveryPointRow] = []

        async def mark(tx: Tx) -> str | None:
            # The instance row first: a restore starting on one of these points holds it until its
            # job is committed, so the re-check below then sees that job (PostgreSQL, READ COMMITTED).
            instance = await tx.resource(instance_key)
            marked = set(await tx.mark_expired([rp.id for rp in listed], now=now))
            points[:] = [rp for rp in listed if rp.id in marked]
            if instance is None or not points:
                return None
            resource = decode_instance(instance.body)
            return await records.create(
                tx, now=now, subscription=instance.subscription, vault_key=instance.parent_key,
                vault_name=vault_name_of(resource.id or ""), instance_key=instance.key,
                instance_id=resource.id, instance=resource.properties,
                operation="Retention", category="Retention", user_triggered=False,
            )  # fmt: skip

        job_id = await self.svc.store.transact(mark)
        if not points:
            return
        await delete_objects(self.datastore, points)

        async def finish(tx: Tx) -> None:
            for rp in points:
                await tx.delete_recovery_point(rp.id)
            if job_id:
                await records.finish(
                    tx, job_id, now=self.svc.now(), status=records.COMPLETED,
                    details={"DeletedRecoveryPoints": str(len(points)), "RecoveryPointIds": ",".join(p.id for p in points)},
                )  # fmt: skip

        await self.svc.store.transact(finish)
        log.info("retention", instance=instance_key, deleted=len(points))


async def delete_objects(datastore: LocalDatastore, points: list[RecoveryPointRow]) -> None:
    await delete_keys(datastore, [rp.object_key for rp in points])


async def delete_keys(datastore: LocalDatastore, object_keys: list[str]) -> None:
    """Backup objects and their manifests, off the event loop."""

    def remove() -> None:
        for key in object_keys:
            datastore.delete(key)
            datastore.delete(manifest_key(key))

    await asyncio.to_thread(remove)

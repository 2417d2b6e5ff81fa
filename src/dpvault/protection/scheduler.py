"""The scheduler: turns policy schedules into exactly one backup job per instance and occurrence.

Each protected item has ``next_due_at``. A tick takes the due items (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, the single writer on SQLite), enqueues the newest occurrence that has passed (only the
newest: after downtime there is one catch-up backup, not a storm) with a dedupe key
``backup:<instance>:<occurrence>``, and moves ``next_due_at`` to the next occurrence. Several
schedulers on one database therefore never enqueue an occurrence twice.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from dpvault.model.instances.rules import decode_instance
from dpvault.protection.retention import Retention
from dpvault.protection.service import Protection
from dpvault.store import Tx

log = structlog.get_logger("dpvault.scheduler")

BATCH = 200
IDLE = 30.0
SWEEP_EVERY = 300.0


class Scheduler:
    def __init__(self, protection: Protection, retention: Retention) -> None:
        self.protection = protection
        self.retention = retention
        self.svc = protection.svc
        self._wake = asyncio.Event()
        self._stopping = False
        self._planned = 0.0  # when the loop will look again by itself (business time)

    def wake(self, at: float | None = None) -> None:
        """Look again now; with ``at`` (business time) only if that is before the planned wake-up."""
        if at is None or at < self._planned:
            self._wake.set()

    async def tick(self) -> int:
        """Enqueue every due occurrence; returns how many backups were enqueued."""
        total = 0
        while True:
            enqueued, more = await self.svc.store.transact(self._tick_batch)
            total += enqueued
            if not more:
                break
        if total:
            self.svc.wake_worker()
        return total

    async def _tick_batch(self, tx: Tx) -> tuple[int, bool]:
        now = self.svc.now()
        items = await tx.due_protected_items(now=now, limit=BATCH)
        enqueued = 0
        for item in items:
            instance = await tx.resource(item.instance_key)
            policy_row = await tx.resource(item.policy_key)
            if instance is None or policy_row is None:
                await tx.delete_protected_item(item.instance_key)
                continue
            bi = decode_instance(instance.body).properties
            if bi.policyInfo.policyId.lower() != item.policy_key or self.protection.engine_for(bi) is None:
                await tx.delete_protected_item(item.instance_key)  # nothing (more) to back up here
                continue
            try:  # pure computation, before any write: a policy it fails on must not stall the others
                latest, rule_name, next_due = self.protection.planner.plan(policy_row, now)
            except Exception:
                log.exception("schedule of policy cannot be computed", policy=item.policy_key)
                await tx.update_protected_item(item.instance_key, next_due_at=None, updated_at=now)
                continue
            last = item.last_occurrence
            if latest is not None and rule_name is not None and (last is None or latest > last + 1e-6):
                job = await self.protection.backups.start(
                    tx,
                    instance=instance,
                    rule_name=rule_name,
                    tag=None,
                    occurrence=latest,
                    user_triggered=False,
                )
                enqueued += 1 if job else 0
                last = latest
            await tx.update_protected_item(
                item.instance_key,
                last_occurrence=last,
                next_due_at=next_due,
                updated_at=now,
            )
        return enqueued, len(items) == BATCH

    async def next_event(self) -> float | None:
        """When the scheduler, retention or the soft-delete purge next has something to do (business time)."""
        async with self.svc.store.read() as tx:
            found = (await tx.next_due_time(), await tx.next_expiry(), await tx.next_soft_purge())
        times = [t for t in found if t is not None]
        return min(times) if times else None

    async def run(self) -> None:
        """Tick, expire, sweep; then sleep until the next due time (at most IDLE seconds) or a wake."""
        last_sweep = 0.0
        while not self._stopping:
            try:
                await self.tick()
                await self.retention.tick()
                await self.protection.soft_deletes.tick()
                if self.svc.real_now() - last_sweep > SWEEP_EVERY:
                    last_sweep = self.svc.real_now()
                    await self.protection.points.sweep()
            except Exception:
                log.exception("scheduler tick failed")
            timeout = IDLE
            if not self.svc.clock.manual:
                with contextlib.suppress(Exception):
                    nxt = await self.next_event()
                    if nxt is not None:
                        timeout = max(0.05, min(IDLE, nxt - self.svc.now()))
            self._wake.clear()
            self._planned = self.svc.now() + timeout if not self.svc.clock.manual else float("inf")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)
            self._planned = 0.0

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

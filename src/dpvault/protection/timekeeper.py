"""The manual clock's driver (``serve --clock manual``).

The clock's value lives in the database so every process agrees on it. ``advance`` walks time
forward event by event: it moves the clock to the next schedule occurrence or expiry, lets the
scheduler enqueue, waits until the job queue is idle (the backups ran), expires what is due, and
repeats until the target. Advancing a week therefore takes each of the week's backups in order,
as real time would have, only faster.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from dpvault.clock import ManualClock
from dpvault.protection.scheduler import Scheduler
from dpvault.services import Services

MAX_STEPS = 100_000
# One request moves time for at most this long (real seconds), well inside client timeouts; a
# longer advance answers complete=false at the time it reached, and the caller asks again.
BUDGET = 50.0
# How long one event's backups may run before the advance gives up waiting (answers complete=false).
SETTLE_LIMIT = 600.0


@dataclass
class AdvanceResult:
    now: float
    backups: int
    expired: int
    complete: bool = True
    purged: int = 0  # soft-deleted instances and vaults purged after their retention days


class Timekeeper:
    def __init__(self, svc: Services, clock: ManualClock, scheduler: Scheduler | None) -> None:
        self.svc = svc
        self.clock = clock
        self.scheduler = scheduler
        self._lock = asyncio.Lock()

    async def load(self) -> None:
        """Adopt the shared clock value, or publish ours if this database has none yet."""

        async def read_or_init(tx):  # type: ignore[no-untyped-def]
            value = await tx.clock()
            if value is None:
                await tx.set_clock(self.clock.time())
                return self.clock.time()
            return value

        self.clock.set(await self.svc.store.transact(read_or_init))

    async def follow(self) -> None:
        """Keep up with advances made by other processes."""
        while True:
            await asyncio.sleep(0.2)
            with contextlib.suppress(Exception):
                async with self.svc.store.read() as tx:
                    value = await tx.clock()
                if value is not None:
                    self.clock.set(value)

    async def _set(self, value: float) -> None:
        self.clock.set(value)
        await self.svc.store.transact(lambda tx: tx.set_clock(self.clock.time()))

    async def _settle(self, deadline: float) -> None:
        """Wait until no job is due or running (TimeoutError past ``deadline``, real time)."""
        while True:
            async with self.svc.store.read() as tx:
                pending = await tx.pending_jobs(now=self.svc.real_now())
            if pending == 0:
                return
            if self.svc.real_now() > deadline:
                raise TimeoutError("background jobs did not finish")
            self.svc.wake_worker()
            await asyncio.sleep(0.02)

    async def _step(self, deadline: float, result: AdvanceResult) -> None:
        """Enqueue what is due now, let it run, expire what is due: counted into ``result`` as it
        happens, so an interrupted step still reports the backups it started."""
        if self.scheduler is None:
            return
        result.backups += await self.scheduler.tick()
        await self._settle(deadline)
        result.expired += await self.scheduler.retention.tick()
        result.purged += await self.scheduler.protection.soft_deletes.tick()
        await self._settle(deadline)

    async def advance(self, target: float, budget: float = BUDGET) -> AdvanceResult:
        """Walk to ``target``; past ``budget`` real seconds, stop at the event reached (every
        request still takes at least one event, so repeating it always gets there)."""
        async with self._lock:
            started = self.svc.real_now()
            hard = started + SETTLE_LIMIT  # the first event: it must finish, or nothing ever moves
            soft = min(hard, started + budget)  # every later one: the request's budget
            result = AdvanceResult(self.clock.time(), 0, 0, complete=False)
            try:
                await self._settle(hard)
                await self._step(hard, result)
                for _ in range(MAX_STEPS):
                    nxt = await self.scheduler.next_event() if self.scheduler else None
                    if nxt is None or nxt > target or nxt <= self.clock.time():
                        break  # nothing more before the target (or what is due cannot run yet)
                    await self._set(max(nxt, self.clock.time()))
                    await self._step(soft, result)
                    if self.svc.real_now() > soft:
                        raise TimeoutError("the request's time budget is spent")
                await self._set(target)
                await self._step(soft, result)
                result.complete = True
            except TimeoutError:
                pass  # time stops at the event reached; the next request goes on from there
            result.now = self.clock.time()
            return result

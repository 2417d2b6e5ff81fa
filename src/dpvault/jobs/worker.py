"""The worker loop. See the package docstring for the protocol."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import traceback
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec
import structlog

from dpvault.errors import PermanentError, StateStoreFullError
from dpvault.services import Services
from dpvault.store import JobRow

log = structlog.get_logger("dpvault.worker")

PRUNE_EVERY = 600.0
KEEP_FINISHED = 7 * 24 * 3600.0  # finished jobs are kept a week, for diagnosis

P = TypeVar("P")


@dataclass(frozen=True, slots=True)
class Claimed(Generic[P]):
    """A job this worker holds: its payload, and the queue's facts beside it (never inside it)."""

    id: int
    worker: str  # the lease owner: a handler that marks the job done itself needs it
    attempt: int
    payload: P


Run = Callable[[Claimed[Any]], Awaitable[bool | None]]
GiveUp = Callable[[Claimed[Any], str], Awaitable[None]]
RunMany = Callable[[list[Claimed[Any]]], Awaitable[list[Claimed[Any]]]]


@dataclass(frozen=True)
class JobType:
    """How one kind of job runs. ``run`` returns True when it marked the job done itself (in its
    own transaction); ``give_up`` ends the job's operation or record when it is out of attempts."""

    run: Run
    give_up: GiveUp | None = None
    # Optional: run several claimed jobs at once (marking them done itself); returns the jobs it
    # left for ``run`` one by one.
    run_many: RunMany | None = None
    # What the stored payload decodes into (a Struct of ``dpvault.model.payloads``).
    payload: type = dict


class Worker:
    def __init__(
        self, svc: Services, types: dict[str, JobType], *, concurrency: int = 8, poll: float = 1.0
    ) -> None:
        self.svc = svc
        self.types = types
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = asyncio.Event()
        self._concurrency = concurrency
        self._slot_freed = asyncio.Event()
        self._poll = poll
        self._tasks: set[asyncio.Task[None]] = set()
        self._busy = 0  # jobs in flight, against ``concurrency``
        self._stopping = False
        self.lease_expiries = 0  # jobs this worker found with an expired lease and requeued (metrics)

    def wake(self) -> None:
        self._wake.set()

    def _done(self, task: asyncio.Task[None], jobs: int) -> None:
        self._tasks.discard(task)
        self._busy -= jobs
        self._slot_freed.set()
        if not task.cancelled() and task.exception() is not None:
            # Recording the outcome failed (the state database full, say): the lease expires and
            # the job runs again.
            log.warning("job outcome not recorded; it runs again", error=repr(task.exception())[:200])

    async def run(self) -> None:
        lease = self.svc.settings.lease_seconds
        sweeper = asyncio.create_task(self._sweep_leases())
        try:
            while not self._stopping:
                free = self._concurrency - self._busy
                if free <= 0:
                    self._slot_freed.clear()
                    await self._slot_freed.wait()
                    continue
                try:
                    now = self.svc.real_now()
                    claimed = await self.svc.store.transact(
                        lambda tx, now=now, free=free: tx.claim_jobs(
                            self.owner, now=now, lease_until=now + lease, limit=free
                        )
                    )
                except StateStoreFullError:  # said once by the store; no job can start meanwhile
                    await asyncio.sleep(self._poll)
                    continue
                except Exception:
                    log.exception("claim failed")
                    await asyncio.sleep(self._poll)
                    continue
                if not claimed:
                    await self._idle()
                    continue
                together: dict[str, list[JobRow]] = {}
                for job in claimed:
                    job_type = self.types.get(job.kind)
                    if job_type and job_type.run_many and job.attempts == 1:  # first tries only
                        together.setdefault(job.kind, []).append(job)
                    else:
                        self._spawn(self._execute(job), 1)
                for kind, jobs in together.items():
                    self._spawn(self._execute_many(self.types[kind], jobs), len(jobs))
        finally:
            sweeper.cancel()

    def _spawn(self, work: Awaitable[None], jobs: int) -> None:
        """Run ``work`` (``jobs`` jobs: a batch holds a slot for each until it ends)."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        self._busy += jobs
        task.add_done_callback(lambda task: self._done(task, jobs))

    def _claimed(self, job: JobRow, job_type: JobType) -> Claimed[Any]:
        return Claimed(
            job.id, self.owner, job.attempts, msgspec.json.decode(job.payload, type=job_type.payload)
        )

    async def _execute_many(self, job_type: JobType, jobs: list[JobRow]) -> None:
        """Jobs of one type claimed together; what ``run_many`` leaves (or all, if it raises) runs
        one by one as usual, in tasks of its own. ``run_many`` must be short work: it has no
        heartbeat (the lease outlasts it)."""
        assert job_type.run_many is not None
        by_id = {job.id: job for job in jobs}
        try:
            claimed = [self._claimed(job, job_type) for job in jobs]
            left = await job_type.run_many(claimed)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("batched jobs failed; running them one by one", count=len(jobs))
            left = None
        if self._stopping:
            return  # their leases expire and they are claimed again
        for job_id in by_id if left is None else [c.id for c in left]:
            # each its own task and slot; the batch's slots free when it returns
            self._spawn(self._execute(by_id[job_id]), 1)

    async def _sweep_leases(self) -> None:
        """Every half lease: make jobs of dead workers claimable again; now and then prune old jobs."""
        lease = self.svc.settings.lease_seconds
        last_prune = 0.0
        while True:
            with contextlib.suppress(Exception):
                now = self.svc.real_now()
                expired = await self.svc.store.transact(lambda tx, now=now: tx.requeue_expired(now=now))
                if expired:
                    self.lease_expiries += expired
                    self.wake()
                if now - last_prune > PRUNE_EVERY:
                    last_prune = now
                    await self.svc.store.transact(
                        lambda tx, now=now: tx.prune_jobs(before=now - KEEP_FINISHED)
                    )
            await asyncio.sleep(max(0.2, lease / 2))

    async def _idle(self) -> None:
        """Sleep until woken, until the next job is due, or for one poll interval (other processes)."""
        timeout = self._poll
        with contextlib.suppress(Exception):
            async with self.svc.store.read() as tx:
                due = await tx.next_job_time()
            if due is not None:
                timeout = max(0.0, min(timeout, due - self.svc.real_now()))
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=timeout)

    async def _execute(self, job: JobRow) -> None:
        heartbeat = asyncio.create_task(self._heartbeat(job))
        try:
            job_type = self.types.get(job.kind)
            if job_type is None:
                await self._finish(job, "failed", f"unknown job kind {job.kind!r}")
                return
            try:
                claimed = self._claimed(job, job_type)
            except msgspec.MsgspecError as exc:  # written by a bug: retrying cannot help
                log.error("job payload unreadable", job=job.id, kind=job.kind, error=str(exc))
                await self._finish(job, "failed", f"unreadable payload: {exc}")
                return
            if job.attempts > job.max_attempts:
                # Its workers died every time (leases expired): a job that kills its worker must
                # not be retried forever.
                reason = job.last_error or "its worker stopped while running it"
                await self._give_up(job, job_type, claimed, reason)
                return
            try:
                completed = await job_type.run(claimed)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "job failed",
                    job=job.id,
                    kind=job.kind,
                    attempt=job.attempts,
                    error=reason,
                    trace=traceback.format_exc(limit=5),
                )
                if job.attempts >= job.max_attempts or isinstance(exc, PermanentError):
                    await self._give_up(job, job_type, claimed, reason)
                else:
                    await self._retry(job, reason)
                return
            if completed is not True:  # a handler returning True marked the job done itself
                await self._finish(job, "done", None)
        finally:
            heartbeat.cancel()
            self.wake()

    async def _give_up(self, job: JobRow, job_type: JobType, claimed: Claimed[Any], reason: str) -> None:
        """Out of attempts: the job's operation or record fails for its users, then the job. Users
        see a generic message naming the job (the internal reason may hold internals; it stays in the
        log and the job row). If even that cannot be recorded, the job is retried, not dropped."""
        public = f"an internal error occurred (dpvault job {job.id}; the server log has the details)"
        if job_type.give_up is not None:
            try:
                await job_type.give_up(claimed, public)
            except Exception:
                log.exception("job give-up failed; retrying", job=job.id, kind=job.kind)
                await self._retry(job, reason)
                return
        log.error("job gave up", job=job.id, kind=job.kind, attempts=job.attempts, error=reason)
        await self._finish(job, "failed", reason)

    async def _retry(self, job: JobRow, reason: str) -> None:
        backoff = min(30.0, 0.5 * 2 ** min(6, max(1, job.attempts) - 1))
        run_at = self.svc.real_now() + backoff
        await self.svc.store.transact(
            lambda tx: tx.retry_job(job.id, self.owner, run_at=run_at, error=reason)
        )

    async def _finish(self, job: JobRow, state: str, error: str | None) -> None:
        now = self.svc.real_now()
        await self.svc.store.transact(
            lambda tx: tx.finish_job(job.id, self.owner, now=now, state=state, error=error)
        )

    async def _heartbeat(self, job: JobRow) -> None:
        lease = self.svc.settings.lease_seconds
        while True:
            await asyncio.sleep(lease / 3)
            now = self.svc.real_now()
            with contextlib.suppress(Exception):
                await self.svc.store.transact(
                    lambda tx, now=now: tx.renew_lease(job.id, self.owner, lease_until=now + lease)
                )

    async def stop(self) -> None:
        self._stopping = True
        self.wake()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._tasks, return_exceptions=True)

"""The worker's last resort: a job out of attempts fails for its users with a message that names the
job but not the internals, a job that kills its worker every time is given up rather than retried
forever, and a give-up that cannot be recorded leaves the job to be retried, not dropped."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec

from dpvault.clock import Clock
from dpvault.jobs.worker import Claimed, JobType, Worker
from dpvault.services import Services
from dpvault.settings import Settings
from dpvault.store import JobRow, Store

SECRET_DETAIL = "password=hunter2 at /internal/path"


async def _services(tmp_path: Path) -> Services:
    store = await Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    return Services(Settings(data_dir=tmp_path, lease_seconds=0.5), store, Clock(), wake_worker=lambda: None)


async def _run_until(svc: Services, worker: Worker, done: Any, within: float = 10.0) -> list[JobRow]:
    task = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(within):
            while True:
                async with svc.store.read() as tx:
                    rows = await tx.jobs_by_state(["ready", "running", "done", "failed"])
                if done(rows):
                    return rows
                await asyncio.sleep(0.05)
    finally:
        await worker.stop()
        task.cancel()


def test_a_failing_job_gives_up_with_a_public_message(tmp_path: Path) -> None:
    async def run() -> None:
        svc = await _services(tmp_path)
        runs: list[int] = []
        given_up: list[str] = []

        async def fail(job: Claimed[Any]) -> None:
            runs.append(1)
            raise RuntimeError(SECRET_DETAIL)

        async def give_up(job: Claimed[Any], reason: str) -> None:
            given_up.append(reason)

        await svc.store.transact(lambda tx: tx.enqueue("t", msgspec.json.encode({}), now=0.0, max_attempts=2))
        worker = Worker(svc, {"t": JobType(fail, give_up)}, poll=0.05)
        rows = await _run_until(svc, worker, lambda rows: rows and rows[0].state == "failed")
        assert len(runs) == 2 and len(given_up) == 1
        assert f"dpvault job {rows[0].id}" in given_up[0] and SECRET_DETAIL not in given_up[0]
        assert SECRET_DETAIL in (rows[0].last_error or "")  # kept for the operator, in the job row
        await svc.store.close()

    asyncio.run(run())


def test_a_job_whose_worker_dies_every_time_is_given_up_without_running_again(tmp_path: Path) -> None:
    async def run() -> None:
        svc = await _services(tmp_path)
        runs: list[int] = []
        given_up: list[str] = []

        async def never(job: Claimed[Any]) -> None:
            runs.append(1)

        async def give_up(job: Claimed[Any], reason: str) -> None:
            given_up.append(reason)

        await svc.store.transact(lambda tx: tx.enqueue("t", msgspec.json.encode({}), now=0.0, max_attempts=2))
        for _ in range(2):  # two workers claim it and die (their leases expire)
            await svc.store.transact(lambda tx: tx.claim_jobs("dead", now=1.0, lease_until=2.0, limit=1))
            await svc.store.transact(lambda tx: tx.requeue_expired(now=3.0))
        worker = Worker(svc, {"t": JobType(never, give_up)}, poll=0.05)
        rows = await _run_until(svc, worker, lambda rows: rows and rows[0].state == "failed")
        assert runs == [] and len(given_up) == 1 and "worker stopped" in (rows[0].last_error or "")
        await svc.store.close()

    asyncio.run(run())


def test_a_give_up_that_cannot_be_recorded_is_retried_not_dropped(tmp_path: Path) -> None:
    async def run() -> None:
        svc = await _services(tmp_path)
        attempts: list[int] = []

        async def fail(job: Claimed[Any]) -> None:
            raise RuntimeError("boom")

        async def give_up(job: Claimed[Any], reason: str) -> None:
            attempts.append(1)
            if len(attempts) == 1:
                raise RuntimeError("the database went away")

        await svc.store.transact(lambda tx: tx.enqueue("t", msgspec.json.encode({}), now=0.0, max_attempts=1))
        worker = Worker(svc, {"t": JobType(fail, give_up)}, poll=0.05)
        rows = await _run_until(svc, worker, lambda rows: rows and rows[0].state == "failed", within=15)
        assert len(attempts) == 2 and rows[0].state == "failed"
        await svc.store.close()

    asyncio.run(run())


async def _enqueue(svc: Services, count: int, *, max_attempts: int = 5) -> None:
    async def write(tx: Any) -> None:
        for n in range(count):
            await tx.enqueue("t", msgspec.json.encode({"n": n}), now=0.0, max_attempts=max_attempts)

    await svc.store.transact(write)


def test_jobs_claimed_together_go_to_run_many_and_what_it_leaves_runs_alone(tmp_path: Path) -> None:
    async def run() -> None:
        svc = await _services(tmp_path)
        batches: list[list[int]] = []
        alone: list[int] = []

        async def run_many(jobs: list[Claimed[Any]]) -> list[Claimed[Any]]:
            batches.append([j.payload["n"] for j in jobs])

            async def write(tx: Any) -> None:  # the even ones: done here, in one transaction
                for j in jobs:
                    if j.payload["n"] % 2 == 0:
                        await tx.finish_job(j.id, j.worker, now=1.0, state="done", error=None)

            await svc.store.transact(write)
            return [j for j in jobs if j.payload["n"] % 2]

        async def one(job: Claimed[Any]) -> None:
            alone.append(job.payload["n"])

        await _enqueue(svc, 6)
        worker = Worker(svc, {"t": JobType(one, None, run_many)}, poll=0.05)
        rows = await _run_until(
            svc, worker, lambda rows: len(rows) == 6 and all(r.state == "done" for r in rows)
        )
        assert sorted(n for batch in batches for n in batch) == list(range(6))  # each job once
        assert max(len(batch) for batch in batches) > 1  # claimed together, run together
        assert sorted(alone) == [1, 3, 5]
        assert all(r.attempts == 1 for r in rows)
        await svc.store.close()

    asyncio.run(run())


def test_a_failing_batch_runs_its_jobs_one_by_one(tmp_path: Path) -> None:
    async def run() -> None:
        svc = await _services(tmp_path)
        alone: list[int] = []

        async def run_many(jobs: list[Claimed[Any]]) -> list[Claimed[Any]]:
            raise RuntimeError("one bad job spoils the batch")

        async def one(job: Claimed[Any]) -> None:
            alone.append(job.payload["n"])

        await _enqueue(svc, 4)
        worker = Worker(svc, {"t": JobType(one, None, run_many)}, poll=0.05)
        rows = await _run_until(
            svc, worker, lambda rows: len(rows) == 4 and all(r.state == "done" for r in rows)
        )
        assert sorted(alone) == [0, 1, 2, 3]  # each exactly once, none lost with the batch
        assert all(r.attempts == 1 for r in rows)
        await svc.store.close()

    asyncio.run(run())


def test_a_retried_job_runs_alone(tmp_path: Path) -> None:
    async def run() -> None:
        svc = await _services(tmp_path)
        batched: list[int] = []
        alone: list[int] = []

        async def run_many(jobs: list[Claimed[Any]]) -> list[Claimed[Any]]:
            batched.extend(j.payload["n"] for j in jobs)
            return jobs

        async def one(job: Claimed[Any]) -> None:
            alone.append(job.payload["n"])

        await _enqueue(svc, 2)
        # a worker claimed both and died; after the lease they are second attempts
        await svc.store.transact(lambda tx: tx.claim_jobs("dead", now=1.0, lease_until=2.0, limit=2))
        await svc.store.transact(lambda tx: tx.requeue_expired(now=3.0))
        worker = Worker(svc, {"t": JobType(one, None, run_many)}, poll=0.05)
        rows = await _run_until(
            svc, worker, lambda rows: len(rows) == 2 and all(r.state == "done" for r in rows)
        )
        assert batched == [] and sorted(alone) == [0, 1]
        assert all(r.attempts == 2 for r in rows)
        await svc.store.close()

    asyncio.run(run())


def test_a_batch_holds_a_slot_for_each_of_its_jobs(tmp_path: Path) -> None:
    """Jobs a batch leaves run inside it; the worker must not claim past its concurrency meanwhile."""

    async def run() -> None:
        svc = await _services(tmp_path)
        running = 0
        most = 0
        release = asyncio.Event()

        async def run_many(jobs: list[Claimed[Any]]) -> list[Claimed[Any]]:
            return jobs  # all left to run one by one (like deep validations)

        async def one(job: Claimed[Any]) -> None:
            nonlocal running, most
            running += 1
            most = max(most, running)
            await release.wait()
            running -= 1

        await _enqueue(svc, 12)
        worker = Worker(svc, {"t": JobType(one, None, run_many)}, concurrency=4, poll=0.05)
        task = asyncio.create_task(worker.run())
        await asyncio.sleep(1.0)  # time enough to claim everything if slots were miscounted
        assert most == 4
        release.set()
        await worker.stop()
        task.cancel()
        await svc.store.close()

    asyncio.run(run())


def test_jobs_a_batch_finished_free_their_slots_while_its_leftovers_run(tmp_path: Path) -> None:
    """A slow job a batch left (a deep validation) holds one slot, not the whole batch's."""

    async def run() -> None:
        svc = await _services(tmp_path)
        release = asyncio.Event()
        started: dict[int, asyncio.Event] = {0: asyncio.Event(), 9: asyncio.Event()}

        async def run_many(jobs: list[Claimed[Any]]) -> list[Claimed[Any]]:
            async def write(tx: Any) -> None:
                for j in jobs:
                    if j.payload["n"] != 0:
                        await tx.finish_job(j.id, j.worker, now=1.0, state="done", error=None)

            await svc.store.transact(write)
            return [j for j in jobs if j.payload["n"] == 0]  # job 0 is slow

        async def one(job: Claimed[Any]) -> None:
            started[job.payload["n"]].set()
            if job.payload["n"] == 0:
                await release.wait()

        await _enqueue(svc, 4)
        worker = Worker(svc, {"t": JobType(one, None, run_many), "u": JobType(one)}, concurrency=4, poll=0.05)
        task = asyncio.create_task(worker.run())
        try:
            async with asyncio.timeout(10):
                await started[0].wait()
                await svc.store.transact(lambda tx: tx.enqueue("u", msgspec.json.encode({"n": 9}), now=0.0))
                worker.wake()
                await started[9].wait()  # runs while job 0 still holds its slot
        finally:
            release.set()
            await worker.stop()
            task.cancel()
            await svc.store.close()

    asyncio.run(run())

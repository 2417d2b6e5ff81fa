"""The worker's last resort: a job out of attempts fails for its users with a message that names the
job but not the internals, a job that kills its worker every time is given up rather than retried
forever, and a give-up that cannot be recorded leaves the job to be retried, not dropped."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec

from dpvault.clock import Clock
from dpvault.jobs.worker import JobType, Worker
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

        async def fail(svc: Services, payload: dict[str, Any]) -> None:
            runs.append(1)
            raise RuntimeError(SECRET_DETAIL)

        async def give_up(svc: Services, payload: dict[str, Any], reason: str) -> None:
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

        async def never(svc: Services, payload: dict[str, Any]) -> None:
            runs.append(1)

        async def give_up(svc: Services, payload: dict[str, Any], reason: str) -> None:
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

        async def fail(svc: Services, payload: dict[str, Any]) -> None:
            raise RuntimeError("boom")

        async def give_up(svc: Services, payload: dict[str, Any], reason: str) -> None:
            attempts.append(1)
            if len(attempts) == 1:
                raise RuntimeError("the database went away")

        await svc.store.transact(lambda tx: tx.enqueue("t", msgspec.json.encode({}), now=0.0, max_attempts=1))
        worker = Worker(svc, {"t": JobType(fail, give_up)}, poll=0.05)
        rows = await _run_until(svc, worker, lambda rows: rows and rows[0].state == "failed", within=15)
        assert len(attempts) == 2 and rows[0].state == "failed"
        await svc.store.close()

    asyncio.run(run())

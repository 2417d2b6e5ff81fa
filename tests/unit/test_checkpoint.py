"""SQLite checkpoints run off the event loop (store/checkpoint.py): the writer's commits never copy
the log back themselves (only past a far backstop), yet the log keeps restarting from its
beginning, so its file stays small however many commits there are; nothing committed is lost."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgspec

from dpvault.store import Store
from dpvault.store.checkpoint import BACKSTOP_PAGES, EVERY_COMMITS

COMMITS = EVERY_COMMITS * 10


def test_the_log_restarts_without_the_writer_checkpointing(tmp_path: Path) -> None:
    db = tmp_path / "state.db"

    async def run() -> int:
        store = await Store.open(f"sqlite:///{db}")
        raw = store._writer_conn.connection.driver_connection
        assert raw.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == BACKSTOP_PAGES
        largest = 0
        for n in range(COMMITS):

            async def write(tx: Any, n: int = n) -> None:
                await tx.enqueue("t", msgspec.json.encode({"n": n, "pad": "x" * 2000}), now=float(n))

            await store.transact(write)
            if n % 50 == 0:
                await asyncio.sleep(0)  # let a started checkpoint take the write lock
                largest = max(largest, (tmp_path / "state.db-wal").stat().st_size)
        await store.close()
        return largest

    largest_wal = asyncio.run(run())
    page = 4096 + 24  # a log frame
    # Without restarts the log would hold every commit's pages (at least two each: row and index);
    # with them it holds about EVERY_COMMITS commits' worth.
    assert largest_wal < COMMITS * page, largest_wal
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == COMMITS


def test_a_checkpoint_never_waits_for_the_loops_shared_threads(tmp_path: Path) -> None:
    """Backups hold threads of the loop's default pool for as long as a dump runs; a checkpoint
    queued behind them while holding the write lock would stall every write meanwhile."""

    async def run() -> float:
        store = await Store.open(f"sqlite:///{tmp_path / 'state.db'}")
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(max_workers=2))
        release = threading.Event()
        pumps = [asyncio.create_task(asyncio.to_thread(release.wait, 10.0)) for _ in range(2)]
        try:
            await asyncio.sleep(0.05)
            for n in range(EVERY_COMMITS):  # the last commit starts a checkpoint
                await store.transact(lambda tx, n=n: tx.enqueue("t", b"{}", now=float(n)))
            await asyncio.sleep(0)
            started = time.monotonic()
            await store.transact(lambda tx: tx.enqueue("t", b"{}", now=0.0))
            return time.monotonic() - started
        finally:
            release.set()
            await asyncio.gather(*pumps)
            await store.close()

    assert asyncio.run(run()) < 2.0


def test_batch_reads_of_nothing_are_empty(tmp_path: Path) -> None:
    async def run() -> tuple[Any, Any, Any]:
        store = await Store.open(f"sqlite:///{tmp_path / 'state.db'}")
        try:

            async def read(tx: Any) -> tuple[Any, Any, Any]:
                return (await tx.operations_many([]), await tx.resources_many([]),
                        await tx.finish_jobs([], "me", now=0.0))  # fmt: skip

            return await store.transact(read)
        finally:
            await store.close()

    assert asyncio.run(run()) == ({}, {}, 0)

"""SQLite checkpoints run off the event loop (store/checkpoint.py): the writer's commits never copy
the log back themselves (only past a far backstop), yet the log keeps restarting from its
beginning, so its file stays small however many commits there are; nothing committed is lost."""

from __future__ import annotations

import asyncio
import sqlite3
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

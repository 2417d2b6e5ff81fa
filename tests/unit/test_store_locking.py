"""SQLite: while another process holds the write lock, a write waits without blocking the event
loop (SQLite's own busy wait would), and goes through once the lock is released."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

from dpvault.store import Store


def test_a_write_waits_for_a_foreign_lock_without_blocking_the_loop(tmp_path: Path) -> None:
    path = tmp_path / "state.db"

    async def run() -> None:
        store = await Store.open(f"sqlite:///{path}")
        held = threading.Event()

        def hold_lock() -> None:  # another process's writer, as far as SQLite can tell
            other = sqlite3.connect(path, isolation_level=None)
            other.execute("BEGIN IMMEDIATE")
            held.set()
            time.sleep(0.8)
            other.execute("COMMIT")
            other.close()

        holder = threading.Thread(target=hold_lock)
        holder.start()
        held.wait()
        gaps: list[float] = []

        async def ticker() -> None:
            last = time.monotonic()
            while True:
                await asyncio.sleep(0.01)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        tick = asyncio.create_task(ticker())
        started = time.monotonic()
        await store.transact(lambda tx: tx.set_clock(42.0))
        waited = time.monotonic() - started
        tick.cancel()
        holder.join()
        async with store.read() as tx:
            assert await tx.clock() == 42.0
        assert waited >= 0.5, "the write should have waited for the lock"
        assert max(gaps) < 0.2, f"the event loop was blocked for {max(gaps):.3f} s"
        await store.close()

    asyncio.run(run())

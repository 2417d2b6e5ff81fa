"""SQLite WAL checkpoints off the event loop.

By default SQLite copies the write-ahead log back into the database file in whichever commit
crosses 1,000 log pages, on the committing thread: for dpvault that is the event loop, which then
waits for the copy and two fsyncs. Here the writer's own checkpoints are pushed out to a backstop
(``BACKSTOP_PAGES``) and, every ``EVERY_COMMITS`` commits, a checkpoint runs in a thread on its own
connection while the process's write lock is held: the loop goes on serving requests and reads,
and no commit lands during the checkpoint, so it completes and the next write restarts the log
from its beginning (a log that never restarts keeps growing, and appending to a growing file
stalls behind the file system's journal: measured p99s of 100-200 ms in ``bench`` P1).
"""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor

import structlog

log = structlog.get_logger("dpvault.store")

# The writer checkpoints by itself only past this many log pages (~200 MB): when checkpoints here
# keep failing.
BACKSTOP_PAGES = 50_000
# Once the log restarts, its file is truncated to this size (it only grows past it if checkpoints failed).
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024
# A PUT commits ~10-15 log pages and its configuration about as many.
EVERY_COMMITS = 200


class Checkpointer:
    """Belongs to one event loop, like the Store that owns it (it shares the Store's write lock)."""

    __slots__ = ("_commits", "_conn", "_lock", "_running", "_thread")

    def __init__(self, path: str, lock: asyncio.Lock) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        # Another process checkpointing: give up at once rather than hold the write lock waiting.
        self._conn.execute("PRAGMA busy_timeout=0")
        # Its own thread: in the loop's shared pool it could wait behind backups' long-running
        # threads while holding the write lock, stalling every write.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dpvault-checkpoint")
        self._lock = lock
        self._commits = 0
        self._running: asyncio.Task[None] | None = None

    def committed(self) -> None:
        """Called after each commit, under no lock."""
        self._commits += 1
        if self._commits >= EVERY_COMMITS and self._running is None:
            self._commits = 0
            self._running = asyncio.ensure_future(self._checkpoint())

    async def _checkpoint(self) -> None:
        try:
            async with self._lock:
                await asyncio.get_running_loop().run_in_executor(self._thread, self._run)
        except sqlite3.Error as exc:  # another process checkpointing, a full disk: next time
            log.debug("checkpoint deferred", error=str(exc))
        finally:
            self._running = None

    def _run(self) -> None:
        self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    async def close(self) -> None:
        if self._running is not None:
            await asyncio.gather(self._running, return_exceptions=True)
        self._thread.shutdown(wait=True)
        self._conn.close()

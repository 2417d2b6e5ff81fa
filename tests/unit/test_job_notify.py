"""PostgreSQL: enqueuing a job wakes the workers of every process (LISTEN/NOTIFY). Since migration
0006 the notification comes from a trigger on the jobs table; it is delivered when the enqueuing
transaction commits, never before, and a rolled-back enqueue wakes nobody."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from dpvault.store import Store
from tests.support import PostgresServer


def test_an_enqueue_wakes_listeners_at_commit_and_only_then(source_pg: PostgresServer) -> None:
    url = source_pg.create_database()

    async def run() -> None:
        store = await Store.open(url)
        woken = asyncio.Event()
        listener = asyncio.create_task(store.listen(woken.set))
        try:
            await asyncio.wait_for(woken.wait(), 10)  # listen() wakes once when it starts listening
            woken.clear()

            async def enqueue_then_linger(tx: Any) -> None:
                await tx.enqueue("t", msgspec.json.encode({}), now=0.0)
                await asyncio.sleep(0.5)
                assert not woken.is_set()  # not before the commit

            await store.transact(enqueue_then_linger)
            await asyncio.wait_for(woken.wait(), 5)
            woken.clear()

            class RollbackError(Exception):
                pass

            async def enqueue_then_fail(tx: Any) -> None:
                await tx.enqueue("t", msgspec.json.encode({}), now=0.0)
                raise RollbackError

            try:
                await store.transact(enqueue_then_fail)
            except RollbackError:
                pass
            await asyncio.sleep(0.5)
            assert not woken.is_set()
        finally:
            listener.cancel()
            await store.close()

    asyncio.run(run())

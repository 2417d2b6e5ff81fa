"""What the state database says, as the Store answers it (issue 15, item 2): a row held too long is a
503 ServerBusy, conflicts that outlast the retries a 409, each within a bounded time, never a 500."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text

from dpvault.errors import ArmError
from dpvault.store import Store, Tx, engines, state
from tests.support import PostgresServer


def _url(postgres: PostgresServer | None, tmp_path: Path) -> str:
    return postgres.create_database() if postgres is not None else f"sqlite:///{tmp_path / 'state.db'}"


def test_a_row_held_too_long_is_a_503_in_bounded_time(
    postgres: PostgresServer | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # shorter limits than the defaults (15 s, 10 s), so the test is quick
    monkeypatch.setattr(engines, "PG_LOCK_TIMEOUT_MS", 500)
    monkeypatch.setattr(state, "LOCKED_FOR", 0.5)
    url = _url(postgres, tmp_path)

    async def run() -> None:
        store = await Store.open(url)
        try:
            await store.transact(lambda tx: tx.set_clock(1.0))
            # another session holds what the write needs: the clock's row, or SQLite's write lock
            if postgres is not None:
                other: object = psycopg.connect(url, autocommit=False)
                other.execute("SELECT * FROM clock_state FOR UPDATE")  # type: ignore[attr-defined]
            else:
                other = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
                other.execute("BEGIN IMMEDIATE")  # type: ignore[attr-defined]
            started = time.monotonic()
            with pytest.raises(ArmError) as raised:
                await store.transact(lambda tx: tx.set_clock(2.0))
            assert time.monotonic() - started < 5
            assert raised.value.status == 503 and raised.value.code == "ServerBusy", raised.value.body()
            assert raised.value.headers == {"Retry-After": "1"}
            other.rollback()  # type: ignore[attr-defined]
            other.close()  # type: ignore[attr-defined]
            await store.transact(lambda tx: tx.set_clock(3.0))  # and then it goes through
            async with store.read() as tx:
                assert await tx.clock() == 3.0
        finally:
            await store.close()

    asyncio.run(run())


def test_conflicts_past_the_retries_are_a_409(postgres: PostgresServer | None) -> None:
    if postgres is None:
        pytest.skip("SQLite has one writer: no deadlocks or serialization failures to retry")
    url = postgres.create_database()
    attempts = 0

    async def deadlocked(tx: Tx) -> None:
        nonlocal attempts
        attempts += 1
        # what PostgreSQL raises when it breaks a deadlock (the real error, raised by the server)
        await tx._conn.execute(  # the Tx's connection: there is no statement that deadlocks on demand
            text("DO $$ BEGIN RAISE EXCEPTION 'deadlock detected' USING ERRCODE = '40P01'; END $$")
        )

    async def run() -> None:
        store = await Store.open(url)
        try:
            started = time.monotonic()
            with pytest.raises(ArmError) as raised:
                await store.transact(deadlocked)
            assert time.monotonic() - started < 5
            assert raised.value.status == 409 and raised.value.code == "ConcurrentRequestConflict"
            assert attempts == 5
        finally:
            await store.close()

    asyncio.run(run())

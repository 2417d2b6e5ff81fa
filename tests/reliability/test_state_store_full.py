"""A state database out of space (issue 15): writes answer 507 StateStoreFull (not 500), reads keep
working, nothing is half-written, and writes work again once space is back.

The database lives on a small tmpfs the test mounts and fills: the SQLite file itself, or on
PostgreSQL a tablespace holding the test's database (PostgreSQL's WAL stays on its own disk: a
full WAL disk is a PANIC in PostgreSQL, not something dpvault can answer)."""

from __future__ import annotations

import asyncio
import os
import pwd
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx

from dpvault.errors import StateStoreFullError
from dpvault.store import Store
from tests.reliability.conftest import fill
from tests.support import API, Env, PostgresServer, Server, vault_body, wait_operation

# Far more PUTs than the file system has room for (the loop ends at ten 507s in a row).
MAX_PUTS = 4000
BOUND_S = 120


def _database_on(fs: Path, postgres: PostgresServer | None) -> str:
    if postgres is None:
        return f"sqlite:///{fs}/state.db"
    pg = pwd.getpwnam("postgres")
    location = fs / "tablespace"
    location.mkdir()
    os.chown(location, pg.pw_uid, pg.pw_gid)
    name = "full_" + uuid.uuid4().hex[:8]
    postgres.sql("postgres", f"CREATE TABLESPACE {name} LOCATION '{location}'")
    postgres.sql("postgres", f'CREATE DATABASE "{name}" TABLESPACE {name}')
    return postgres.url(name)


def _drop(postgres: PostgresServer | None, url: str) -> None:
    if postgres is not None:
        name = url.rsplit("/", 1)[1]
        postgres.sql("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        postgres.sql("postgres", f"DROP TABLESPACE IF EXISTS {name}")


def _is_full(r: httpx.Response) -> bool:
    if r.status_code != 507:
        return False
    error = r.json()["error"]
    assert error["code"] == "StateStoreFull", r.text
    assert "out of storage" in error["message"], r.text
    return True


def test_state_database_full_refuses_writes_keeps_reads_and_recovers(
    make_server: Callable[..., Server], postgres: PostgresServer | None, small_fs: Callable[[str], Path]
) -> None:
    fs = small_fs("4m" if postgres is None else "24m")  # a new PostgreSQL database takes ~8 MB
    url = _database_on(fs, postgres)
    server = make_server("--lease-seconds", "2", database_url=url)
    try:
        with server.client() as client:
            env = Env(client).create()
            before = env.create_instance("before-full")
            filler = fill(fs)

            # PUTs until the database has refused ten in a row; PostgreSQL may still fit a row into
            # a page it has, so refusals and acceptances can alternate for a while before that
            started = time.monotonic()
            accepted: list[str] = []
            refused: list[str] = []
            in_a_row = 0
            for i in range(MAX_PUTS):
                name = f"bi-{i}"
                t0 = time.monotonic()
                r = env.put_instance(name)
                assert time.monotonic() - t0 < 10, "a refused write must be answered at once"
                if _is_full(r):
                    refused.append(name)
                    in_a_row += 1
                    if in_a_row == 10:
                        break
                    continue
                assert r.status_code == 201, r.text
                accepted.append(name)
                in_a_row = 0
                assert time.monotonic() - started < BOUND_S, "the database never filled up"
            assert in_a_row == 10, f"no ten 507s in a row after {MAX_PUTS} PUTs"
            print(f"{len(accepted)} PUTs accepted after the disk filled, {len(refused)} refused (507)")
            # another kind of write is refused the same way
            r = client.put(f"{env.vault_path}2?api-version={API}", json=vault_body())
            assert _is_full(r) or (postgres is not None and r.status_code == 201), r.text

            # reads keep working
            got = client.get(f"{env.instance_path('before-full')}?api-version={API}")
            assert got.status_code == 200 and got.json()["id"] == before["id"], got.text
            listed = client.get(f"{env.vault_path}/backupInstances?api-version={API}")
            assert listed.status_code == 200, listed.text
            for name in refused:
                r = client.get(f"{env.instance_path(name)}?api-version={API}")
                assert r.status_code == 404, r.text

            # space back: writes work again, and every accepted write finishes
            filler.unlink()
            r = env.put_instance("after-full")
            assert r.status_code == 201, r.text
            assert (
                wait_operation(client, r.headers["Azure-AsyncOperation"], timeout=60)["status"] == "Succeeded"
            )
            for name in [*accepted, "before-full"]:
                deadline = time.monotonic() + 60
                while True:
                    body = client.get(f"{env.instance_path(name)}?api-version={API}").json()
                    state = body["properties"]["provisioningState"]
                    if state in ("Succeeded", "Failed") or time.monotonic() > deadline:
                        break
                    time.sleep(0.2)
                assert state == "Succeeded", body
        log = server.log()
        assert "unhandled error" not in log and "InternalServerError" not in log
        assert "state database out of space" in log and "state database writable again" in log
    finally:
        server.stop()
        _drop(postgres, url)


def test_store_reports_unhealthy_while_full_and_probe_finds_room_again(
    postgres: PostgresServer | None, small_fs: Callable[[str], Path]
) -> None:
    """``Store.healthy`` (what a readiness check reads): False from a write refused for lack of space
    until a write, or ``Store.probe``, succeeds again."""
    fs = small_fs("4m" if postgres is None else "24m")
    url = _database_on(fs, postgres)

    async def run() -> None:
        store = await Store.open(url)
        try:
            assert store.healthy and await store.probe()
            filler = fill(fs)
            refused = 0
            for i in range(20000):
                try:
                    await store.transact(
                        lambda tx, i=i: tx.put_secret("t", f"k{i}", f"u{i}", os.urandom(8192), now=0.0)
                    )
                except StateStoreFullError:
                    refused += 1
                    break
            assert refused, "the database never filled up"
            assert not store.healthy
            async with store.read() as tx:  # reads keep working
                assert await tx.clock() is None
            filler.unlink()
            assert await store.probe()
            assert store.healthy
        finally:
            await store.close()

    try:
        asyncio.run(run())
    finally:
        _drop(postgres, url)

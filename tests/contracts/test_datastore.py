"""The Datastore contract (``dpvault/datastores/base.py``), run against every implementation: the one
suite a new datastore must pass (restic's backend test suite is the model). Each implementation only
adds a fixture: how to make one, and how to kill a writer in the middle of a put.

The object stores run against real servers (``tests/objectstores.py``): Azurite and moto's S3, one of
each per session (per xdist worker), a fresh container or bucket per test."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dpvault.datastores import (
    Datastore,
    LocalDatastore,
    MemoryDatastore,
    ObjectNotFoundError,
    open_datastore,
)
from dpvault.datastores.base import CHUNK, put_bytes, read_bytes
from tests.objectstores import Azurite, MotoS3, unique

HEARTBEAT = 0.2
GRACE = 1.0  # > 2 heartbeats: what the vault's sweep waits before taking an incomplete write


@dataclass
class Harness:
    store: Datastore
    # Start a put of ``key`` by ``writer`` and kill its writer mid-stream, as a crash would.
    crash_mid_put: Callable[[str, str], Any]
    # Whether the store's sweep finds a dead writer's leftovers: object stores expire them themselves
    # (invisible uploads, see dpvault/datastores/objects.py), so their sweep always says 0.
    sweeps: bool = True
    # How many dead writers' uploads the server still holds, where a test can ask it (S3).
    leftovers: Callable[[], int] | None = None


def _local(tmp_path: Path) -> Harness:
    root = tmp_path / "vault"
    store = LocalDatastore(root, heartbeat=HEARTBEAT)

    async def crash_mid_put(key: str, writer: str) -> None:
        script = textwrap.dedent(f"""
            import asyncio
            from pathlib import Path
            from dpvault.datastores import LocalDatastore

            async def source():
                yield b"x" * 100_000
                await asyncio.sleep(3600)

            asyncio.run(LocalDatastore(Path({str(root)!r}), heartbeat={HEARTBEAT}).put({key!r}, source(), writer={writer!r}))
        """)
        proc = subprocess.Popen([sys.executable, "-c", script])  # noqa: ASYNC220
        try:
            deadline = time.monotonic() + 20
            while not any((root / ".staging").glob(f"{writer}.*.partial")):
                assert proc.poll() is None and time.monotonic() < deadline, "the writer never started"
                await asyncio.sleep(0.02)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()

    return Harness(store, crash_mid_put)


def _memory(tmp_path: Path) -> Harness:
    store = MemoryDatastore(heartbeat=HEARTBEAT)

    async def crash_mid_put(key: str, writer: str) -> None:
        async def source() -> AsyncIterator[bytes]:
            yield b"x" * 100_000
            await asyncio.sleep(3600)

        before = store.incomplete
        task = asyncio.create_task(store.put(key, source(), writer=writer))
        while store.incomplete == before:  # noqa: ASYNC110 - polling the store's own counter
            await asyncio.sleep(0.01)
        store.simulate_crash()
        task.cancel()  # the process is gone: nothing of the put runs any more
        with pytest.raises(asyncio.CancelledError):
            await task

    return Harness(store, crash_mid_put)


def _object_store(
    url: str, environ: dict[str, str], tmp_path: Path, leftovers: Callable[[], int] | None
) -> Harness:
    store = open_datastore(
        url, data_dir_default=tmp_path, heartbeat=HEARTBEAT, environ=environ, retry_timeout=10
    )

    async def crash_mid_put(key: str, writer: str) -> None:
        # Two parts' worth, then a source that never ends: the upload has begun when it says so.
        script = textwrap.dedent(f"""
            import asyncio, json, sys
            from pathlib import Path
            from dpvault.datastores import open_datastore

            async def source():
                for _ in range(2):
                    yield b"x" * (6 << 20)
                print("streaming", flush=True)
                await asyncio.sleep(3600)

            store = open_datastore({url!r}, data_dir_default=Path("."), heartbeat={HEARTBEAT},
                                   environ=json.loads({json.dumps(environ)!r}))
            asyncio.run(store.put({key!r}, source(), writer={writer!r}))
        """)
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)  # noqa: ASYNC220
        try:
            assert proc.stdout is not None
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
            assert line.strip() == b"streaming", "the writer never started"
            await asyncio.sleep(0.5)  # let the first part reach the server
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()

    return Harness(store, crash_mid_put, sweeps=False, leftovers=leftovers)


def _azure(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    server: Azurite = request.getfixturevalue("azurite")
    container = server.make_container(unique("dpv"))
    return _object_store(f"azure://{container}/vault", server.environ(), tmp_path, None)


def _s3(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    server: MotoS3 = request.getfixturevalue("moto_s3")
    bucket = server.make_bucket(unique("dpv"))
    return _object_store(
        f"s3://{bucket}/vault", server.environ(), tmp_path, lambda: server.incomplete_uploads(bucket)
    )


@pytest.fixture(params=["local", "memory", "azure", "s3"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    make = {"local": lambda: _local(tmp_path), "memory": lambda: _memory(tmp_path)}
    make |= {"azure": lambda: _azure(request, tmp_path), "s3": lambda: _s3(request, tmp_path)}
    yield make[request.param]()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _chunks(data: bytes, size: int = 300_000) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]
        await asyncio.sleep(0)


async def _collect(store: Datastore, key: str) -> list[bytes]:
    return [chunk async for chunk in store.get(key)]


async def _keys(store: Datastore, prefix: str = "") -> list[str]:
    return sorted([info.key async for info in store.list(prefix)])


class _Gate:
    """A source that stops after its first chunk until released (or raises, when told to)."""

    def __init__(self, first: bytes, rest: bytes) -> None:
        self.first, self.rest = first, rest
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.fail: BaseException | None = None

    async def source(self) -> AsyncIterator[bytes]:
        yield self.first
        self.started.set()
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        yield self.rest


def test_put_streams_and_reports_what_it_wrote(harness: Harness) -> None:
    data = os.urandom(3 * CHUNK + 12345)

    async def go() -> None:
        written = await harness.store.put("v/i/rp.dump", _chunks(data), writer="job-1")
        assert (written.key, written.size, written.sha256) == (
            "v/i/rp.dump",
            len(data),
            hashlib.sha256(data).hexdigest(),
        )
        chunks = await _collect(harness.store, "v/i/rp.dump")
        assert b"".join(chunks) == data
        assert len(chunks) > 1 and max(len(c) for c in chunks) <= CHUNK  # streamed, not one buffer
        info = await harness.store.stat("v/i/rp.dump")
        assert info is not None and info.size == len(data) and abs(info.modified - time.time()) < 60

    run(go())


def test_missing_objects(harness: Harness) -> None:
    async def go() -> None:
        assert await harness.store.stat("v/i/none.dump") is None
        with pytest.raises(ObjectNotFoundError):
            await _collect(harness.store, "v/i/none.dump")
        with pytest.raises(ObjectNotFoundError):
            async with harness.store.local_copy("v/i/none.dump"):
                pass

    run(go())


def test_list_by_prefix_and_idempotent_delete(harness: Harness) -> None:
    async def go() -> None:
        for key in ("a/1/x.dump", "a/1/x.json", "a/2/y.dump", "b/1/z.dump"):
            await put_bytes(harness.store, key, key.encode())
        assert await _keys(harness.store) == ["a/1/x.dump", "a/1/x.json", "a/2/y.dump", "b/1/z.dump"]
        assert await _keys(harness.store, "a/1/") == ["a/1/x.dump", "a/1/x.json"]
        assert await _keys(harness.store, "c/") == []
        await harness.store.delete("a/1/x.dump")
        await harness.store.delete("a/1/x.dump")  # again: no error
        await harness.store.delete("never/was.dump")
        assert await _keys(harness.store, "a/") == ["a/1/x.json", "a/2/y.dump"]
        assert await read_bytes(harness.store, "b/1/z.dump") == b"b/1/z.dump"

    run(go())


def test_an_object_is_invisible_until_whole_and_replaced_atomically(harness: Harness) -> None:
    async def go() -> None:
        gate = _Gate(b"new-" * 1000, b"rest")
        task = asyncio.create_task(harness.store.put("v/i/rp.dump", gate.source(), writer="job-2"))
        await gate.started.wait()
        assert await harness.store.stat("v/i/rp.dump") is None
        assert await _keys(harness.store) == []  # an incomplete write is not an object
        with pytest.raises(ObjectNotFoundError):
            await _collect(harness.store, "v/i/rp.dump")
        gate.release.set()
        await task
        assert await read_bytes(harness.store, "v/i/rp.dump") == b"new-" * 1000 + b"rest"
        # a second put of the same key: readers see the old object until the new one is whole
        again = _Gate(b"second", b"!")
        task = asyncio.create_task(harness.store.put("v/i/rp.dump", again.source(), writer="job-2"))
        await again.started.wait()
        assert await read_bytes(harness.store, "v/i/rp.dump") == b"new-" * 1000 + b"rest"
        again.release.set()
        await task
        assert await read_bytes(harness.store, "v/i/rp.dump") == b"second!"

    run(go())


@pytest.mark.parametrize("how", ["source-raises", "cancelled"])
def test_a_failed_put_leaves_nothing(harness: Harness, how: str) -> None:
    async def go() -> None:
        gate = _Gate(b"x" * 50_000, b"y")
        task = asyncio.create_task(harness.store.put("v/i/rp.dump", gate.source(), writer="job-3"))
        await gate.started.wait()
        if how == "cancelled":
            task.cancel()
        else:
            gate.fail = OSError("pg_dump died")
            gate.release.set()
        with pytest.raises((OSError, asyncio.CancelledError)):
            await task
        assert await harness.store.stat("v/i/rp.dump") is None
        assert await _keys(harness.store) == []
        assert await harness.store.sweep_incomplete(older_than=0) == 0  # nothing was left behind

    run(go())


def test_a_writer_that_dies_mid_put_leaves_nothing_visible_and_the_sweep_removes_it(harness: Harness) -> None:
    async def go() -> None:
        await harness.crash_mid_put("v/i/rp.dump", "job-4")
        assert await harness.store.stat("v/i/rp.dump") is None
        assert await _keys(harness.store) == []
        if not harness.sweeps:  # the store keeps the upload invisible and expires it itself
            assert harness.leftovers is None or harness.leftovers() == 1
            assert await harness.store.sweep_incomplete(older_than=0) == 0
            assert await harness.store.stat("v/i/rp.dump") is None
            return
        assert await harness.store.sweep_incomplete(older_than=GRACE) == 0  # its heartbeat is too recent
        await asyncio.sleep(GRACE + 0.2)
        assert await harness.store.sweep_incomplete(older_than=GRACE) == 1
        assert await harness.store.sweep_incomplete(older_than=0) == 0
        assert await harness.store.stat("v/i/rp.dump") is None

    run(go())


def test_a_known_dead_writers_leftovers_go_at_once_and_no_one_elses(harness: Harness) -> None:
    async def go() -> None:
        await harness.crash_mid_put("v/i/a.dump", "job-5")
        await harness.crash_mid_put("v/i/b.dump", "job-6")
        if not harness.sweeps:
            assert await harness.store.sweep_incomplete(writer="job-5") == 0
            assert await _keys(harness.store) == []
            return
        assert await harness.store.sweep_incomplete(writer="job-5") == 1
        assert await harness.store.sweep_incomplete(writer="job-5") == 0
        assert await harness.store.sweep_incomplete(older_than=0) == 1  # job-6's

    run(go())


def test_a_slow_live_writer_is_never_swept(harness: Harness) -> None:
    async def go() -> None:
        gate = _Gate(b"a" * 10_000, b"b")
        task = asyncio.create_task(harness.store.put("v/i/slow.dump", gate.source(), writer="job-7"))
        await gate.started.wait()
        for _ in range(int(3 * GRACE / HEARTBEAT)):  # stalled for three graces, sweeping all along
            await asyncio.sleep(HEARTBEAT)
            assert await harness.store.sweep_incomplete(older_than=GRACE) == 0
        gate.release.set()
        written = await task
        assert written.size == 10_001
        assert await read_bytes(harness.store, "v/i/slow.dump") == b"a" * 10_000 + b"b"

    run(go())


def test_local_copy_is_a_seekable_file_with_the_objects_bytes(harness: Harness) -> None:
    data = os.urandom(CHUNK + 7)

    async def go() -> None:
        await harness.store.put("v/i/rp.dump", _chunks(data))
        async with harness.store.local_copy("v/i/rp.dump") as path:
            with open(path, "rb") as f:  # noqa: ASYNC230 - a test reading a small local file
                f.seek(CHUNK)
                assert f.read() == data[CHUNK:]
            assert path.read_bytes() == data

    run(go())


@pytest.mark.parametrize(
    "key", ["", "/abs/path", "../escape", "v/../../etc", "UPPER/case", "v//double", "v/i/"]
)
def test_keys_that_could_leave_the_store_are_refused(harness: Harness, key: str) -> None:
    async def go() -> None:
        with pytest.raises(ValueError):
            await put_bytes(harness.store, key, b"x")
        with pytest.raises(ValueError):
            await harness.store.stat(key)
        with pytest.raises(ValueError):
            await harness.store.delete(key)

    run(go())


@pytest.mark.parametrize("how", ["source-raises", "cancelled"])
def test_a_failed_put_of_many_parts_leaves_nothing(harness: Harness, how: str) -> None:
    """Past one part an object store's put is a multipart upload: a failure aborts it."""

    async def go() -> None:
        gate = _Gate(os.urandom(12 << 20), b"y")
        task = asyncio.create_task(harness.store.put("v/i/big.dump", gate.source(), writer="job-8"))
        await gate.started.wait()
        await asyncio.sleep(0.5)  # parts on their way
        if how == "cancelled":
            task.cancel()
        else:
            gate.fail = OSError("pg_dump died")
            gate.release.set()
        with pytest.raises((OSError, asyncio.CancelledError)):
            await task
        assert await harness.store.stat("v/i/big.dump") is None
        assert await _keys(harness.store) == []
        assert harness.leftovers is None or harness.leftovers() == 0  # the upload was aborted

    run(go())

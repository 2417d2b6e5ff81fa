"""Object locks (``put(..., retain_until=)``): where a store enforces them, ``delete`` before the date
raises ObjectLockedError and the object stays; after the date, or unlocked, it deletes as ever.

S3 enforces them itself (Object Lock, COMPLIANCE mode, on a bucket created with Object Lock), memory
like S3, local through an xattr; Azure Blob records none (the state database's ``retain_until`` is what
protects there), so it is not in this suite."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dpvault.datastores import (
    Datastore,
    LocalDatastore,
    MemoryDatastore,
    ObjectLockedError,
    open_datastore,
)
from dpvault.datastores.base import put_bytes, read_bytes
from tests.objectstores import MotoS3, unique


def _xattrs(path: Path) -> bool:
    with tempfile.NamedTemporaryFile(dir=path) as f:
        try:
            os.setxattr(f.fileno(), "user.dpvault.probe", b"1")
        except OSError:
            return False
    return True


@pytest.fixture(params=["local", "memory", "s3"])
def lockable(request: pytest.FixtureRequest, tmp_path: Path) -> Datastore:
    if request.param == "memory":
        return MemoryDatastore(heartbeat=0.2)
    if request.param == "local":
        if not _xattrs(tmp_path):
            pytest.skip("the filesystem has no user xattrs: local stores cannot record locks here")
        return LocalDatastore(tmp_path / "vault", heartbeat=0.2)
    server: MotoS3 = request.getfixturevalue("moto_s3")
    bucket = server.make_bucket(unique("lock"), object_lock=True)
    return open_datastore(
        f"s3://{bucket}/vault", data_dir_default=tmp_path, heartbeat=0.2, environ=server.environ()
    )


def _keys(store: Datastore) -> list[str]:
    async def go() -> list[str]:
        return sorted([info.key async for info in store.list()])

    return asyncio.run(go())


def test_a_locked_object_is_not_deleted_before_its_date(lockable: Datastore) -> None:
    async def go() -> None:
        await put_bytes(lockable, "v/packs/ab/locked.pack", b"keep me", retain_until=time.time() + 3600)
        await put_bytes(lockable, "v/packs/ab/free.pack", b"free")
        with pytest.raises(ObjectLockedError) as raised:
            await lockable.delete("v/packs/ab/locked.pack")
        assert "locked" in str(raised.value) or "lock" in str(raised.value)
        assert await read_bytes(lockable, "v/packs/ab/locked.pack") == b"keep me"
        await lockable.delete("v/packs/ab/free.pack")  # an unlocked object goes as ever
        assert await lockable.stat("v/packs/ab/free.pack") is None

    asyncio.run(go())
    assert _keys(lockable) == ["v/packs/ab/locked.pack"]


def test_a_lock_past_its_date_no_longer_holds(lockable: Datastore) -> None:
    async def go() -> None:
        # long enough that a loaded machine's put (S3: put, then the retention call) ends before it
        until = time.time() + 6
        await put_bytes(lockable, "v/packs/cd/short.pack", b"briefly", retain_until=until)
        with pytest.raises(ObjectLockedError):
            await lockable.delete("v/packs/cd/short.pack")
        await asyncio.sleep(max(0.0, until - time.time()) + 0.5)
        await lockable.delete("v/packs/cd/short.pack")
        assert await lockable.stat("v/packs/cd/short.pack") is None
        await lockable.delete("v/packs/cd/short.pack")  # idempotent still

    asyncio.run(go())
    assert _keys(lockable) == []


def test_a_large_locked_object_is_locked_too(lockable: Datastore) -> None:
    """Past one part the put is a multipart upload: the lock holds on the completed object."""
    data = os.urandom(11 << 20)

    async def go() -> None:
        async def source() -> AsyncIterator[bytes]:
            for start in range(0, len(data), 1 << 20):
                yield data[start : start + (1 << 20)]

        written = await lockable.put("v/i/big.dump", source(), retain_until=time.time() + 3600)
        assert written.size == len(data)
        with pytest.raises(ObjectLockedError):
            await lockable.delete("v/i/big.dump")
        assert (await lockable.stat("v/i/big.dump")) is not None

    asyncio.run(go())

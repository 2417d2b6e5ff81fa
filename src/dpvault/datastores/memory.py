"""A datastore in memory, for tests: the same contract as the others, nothing on disk.

``simulate_crash`` abandons the writes in progress the way a killed process leaves them (no clean-up,
no more heartbeats), so the contract suite can show that the sweep removes them. Object locks
(``retain_until``) are enforced like S3's: ``delete`` refuses before the date; a put over a locked key
keeps the lock (on S3 the locked version stays behind).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import tempfile
import time
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from dpvault.datastores.base import (
    CHUNK,
    ObjectInfo,
    ObjectLockedError,
    ObjectNotFoundError,
    Written,
    check_key,
    check_writer,
)


@dataclass
class _Incomplete:
    writer: str
    data: bytearray = field(default_factory=bytearray)
    beat: float = field(default_factory=time.time)
    crashed: bool = False


class MemoryDatastore:
    def __init__(self, *, heartbeat: float = 5.0) -> None:
        self.heartbeat = heartbeat
        self._objects: dict[str, tuple[bytes, float]] = {}
        self._incomplete: dict[int, _Incomplete] = {}
        self._locks: dict[str, float] = {}  # key -> retain_until
        self._next = 0

    async def put(
        self,
        key: str,
        source: AsyncIterable[bytes],
        *,
        writer: str = "dpvault",
        retain_until: float | None = None,
    ) -> Written:
        check_key(key)
        self._next += 1
        token, write = self._next, _Incomplete(check_writer(writer))
        self._incomplete[token] = write
        beat = asyncio.create_task(self._beat(write))
        digest = hashlib.sha256()
        try:
            async for chunk in source:
                if write.crashed:
                    raise RuntimeError("the writer is dead")
                write.data += chunk
                digest.update(chunk)
            if token not in self._incomplete:
                raise RuntimeError("the incomplete write was swept")
            self._objects[key] = (bytes(write.data), time.time())
            if retain_until is not None:
                self._locks[key] = max(retain_until, self._locks.get(key, 0.0))
            del self._incomplete[token]
        except BaseException:
            if not write.crashed:  # a dead writer cleans up nothing
                self._incomplete.pop(token, None)
            raise
        finally:
            beat.cancel()
        return Written(key, len(write.data), digest.hexdigest())

    async def _beat(self, write: _Incomplete) -> None:
        while not write.crashed:
            write.beat = time.time()
            await asyncio.sleep(self.heartbeat)

    def simulate_crash(self) -> int:
        """Abandon every write in progress as a killed process would. Returns how many."""
        for write in self._incomplete.values():
            write.crashed = True
        return len(self._incomplete)

    @property
    def incomplete(self) -> int:
        """How many incomplete writes the store holds (live or dead)."""
        return len(self._incomplete)

    async def get(self, key: str) -> AsyncIterator[bytes]:
        found = self._objects.get(check_key(key))
        if found is None:
            raise ObjectNotFoundError(key)
        data = found[0]
        for start in range(0, len(data), CHUNK):
            yield data[start : start + CHUNK]
            await asyncio.sleep(0)

    async def get_range(self, key: str, start: int, length: int) -> bytes:
        found = self._objects.get(check_key(key))
        if found is None:
            raise ObjectNotFoundError(key)
        return found[0][start : start + length]

    async def stat(self, key: str) -> ObjectInfo | None:
        found = self._objects.get(check_key(key))
        return ObjectInfo(key, len(found[0]), found[1]) if found else None

    async def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        for key, (data, modified) in sorted(self._objects.items()):
            if key.startswith(prefix):
                yield ObjectInfo(key, len(data), modified)

    async def delete(self, key: str) -> None:
        until = self._locks.get(check_key(key))
        if until is not None and until > time.time():
            raise ObjectLockedError(f"the object {key} is locked until {time.ctime(until)}: not deleted")
        self._locks.pop(key, None)
        self._objects.pop(key, None)

    async def sweep_incomplete(self, *, writer: str | None = None, older_than: float | None = None) -> int:
        if writer is not None:
            check_writer(writer)
        cutoff = time.time() - older_than if older_than is not None else None
        dead = [
            token
            for token, write in self._incomplete.items()
            if write.writer == writer or (cutoff is not None and write.beat < cutoff)
        ]
        for token in dead:
            del self._incomplete[token]
        return len(dead)

    @contextlib.asynccontextmanager
    async def local_copy(self, key: str) -> AsyncIterator[Path]:
        found = self._objects.get(check_key(key))
        if found is None:
            raise ObjectNotFoundError(key)
        with tempfile.TemporaryDirectory(prefix="dpvault-copy-") as tmp:
            path = Path(tmp) / "object"
            path.write_bytes(found[0])
            yield path

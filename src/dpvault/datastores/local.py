"""A datastore in a local directory (the default: ``<data-dir>/vault``).

An object is a file at ``<root>/<key>``. A put streams into ``<root>/.staging/<writer>.<random>.partial``
(created exclusively, mode 0600), then fsyncs it, renames it into place and fsyncs the directory: the
rename is the moment it becomes visible. While a put runs, the store touches its staging file every
``heartbeat`` seconds, so a staging file untouched for longer belongs to a writer that died.

An object lock (``put(..., retain_until=)``) is the extended attribute ``user.dpvault.retain_until``
on the object's file, set before it becomes visible; ``delete`` refuses while it lies ahead. It guards
against dpvault's own mistakes, not against anyone with the filesystem (who can remove the attribute),
and where the filesystem has no user xattrs it is not recorded at all: there, as everywhere, the state
database's ``retain_until`` (which the vault's GC respects) is what protects immutable vaults.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import BinaryIO

from dpvault.datastores.base import (
    CHUNK,
    DatastoreError,
    DatastoreFullError,
    DatastoreRefusedError,
    ObjectInfo,
    ObjectLockedError,
    ObjectNotFoundError,
    Written,
    check_key,
    check_writer,
    valid_key,
)

STAGING = ".staging"
LOCK_XATTR = "user.dpvault.retain_until"
# OS errors that are the store's, not the data's: the put fails as DatastoreError
_STORE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO})


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _append(file: BinaryIO, digest: hashlib._Hash, chunk: bytes) -> None:
    # Both release the GIL on large buffers: run in a thread, they leave the event loop free.
    file.write(chunk)
    digest.update(chunk)


class LocalDatastore:
    def __init__(self, root: Path, *, heartbeat: float = 5.0) -> None:
        self.root = root
        self.heartbeat = heartbeat
        self._staging = root / STAGING
        self._staging.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    # -- writing -----------------------------------------------------------------------------

    async def put(
        self,
        key: str,
        source: AsyncIterable[bytes],
        *,
        writer: str = "dpvault",
        retain_until: float | None = None,
    ) -> Written:
        target = self._path(key)
        staging = self._staging / f"{check_writer(writer)}.{uuid.uuid4().hex}.partial"
        try:
            file = await asyncio.to_thread(_open_exclusive, staging)
        except OSError as exc:
            raise self._failure(exc) from None
        digest = hashlib.sha256()
        size = 0
        beat = asyncio.create_task(self._beat(staging))
        try:
            async for chunk in source:
                if chunk:
                    await asyncio.to_thread(_append, file, digest, chunk)
                    size += len(chunk)
            if retain_until is not None:
                await asyncio.to_thread(_lock, file, retain_until)
            await asyncio.to_thread(_publish, file, staging, target)
        except BaseException as exc:
            beat.cancel()
            await asyncio.shield(asyncio.to_thread(_discard, file, staging))
            if isinstance(exc, OSError) and exc.errno in _STORE_ERRNOS:
                raise self._failure(exc) from None
            raise
        finally:
            beat.cancel()
        return Written(key, size, digest.hexdigest())

    def _failure(self, exc: OSError) -> DatastoreError:
        """An OS error of the store itself, as the port's error (the staging file is gone already)."""
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return DatastoreFullError(f"the vault store {self.root} is full ({os.strerror(exc.errno)})")
        return DatastoreRefusedError(
            f"the vault store {self.root} cannot be written: {os.strerror(exc.errno or 0)}"
        )

    async def _beat(self, staging: Path) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            with contextlib.suppress(OSError):
                os.utime(staging)

    async def delete(self, key: str) -> None:
        path = self._path(key)
        until = await asyncio.to_thread(_locked_until, path)
        if until is not None and until > time.time():
            raise ObjectLockedError(f"the object {key} is locked until {time.ctime(until)}: not deleted")
        await asyncio.to_thread(path.unlink, missing_ok=True)

    async def sweep_incomplete(self, *, writer: str | None = None, older_than: float | None = None) -> int:
        pattern = f"{check_writer(writer)}.*.partial" if writer is not None else None
        return await asyncio.to_thread(self._sweep, pattern, older_than)

    def _sweep(self, pattern: str | None, older_than: float | None) -> int:
        cutoff = time.time() - older_than if older_than is not None else None
        removed = 0
        for entry in self._staging.iterdir():
            with contextlib.suppress(FileNotFoundError):
                mine = pattern is not None and entry.match(pattern)
                if mine or (cutoff is not None and entry.stat().st_mtime < cutoff):
                    entry.unlink()
                    removed += 1
        return removed

    # -- reading -----------------------------------------------------------------------------

    async def get(self, key: str) -> AsyncIterator[bytes]:
        path = self._path(key)
        try:
            file = await asyncio.to_thread(open, path, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFoundError(key) from None
        try:
            while chunk := await asyncio.to_thread(file.read, CHUNK):
                yield chunk
        finally:
            file.close()

    async def get_range(self, key: str, start: int, length: int) -> bytes:
        path = self._path(key)

        def read() -> bytes:
            with open(path, "rb") as f:
                f.seek(start)
                return f.read(length)

        try:
            return await asyncio.to_thread(read)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFoundError(key) from None

    async def stat(self, key: str) -> ObjectInfo | None:
        try:
            st = await asyncio.to_thread(self._path(key).stat)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return ObjectInfo(key, st.st_size, st.st_mtime)

    async def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        for info in await asyncio.to_thread(self._list, prefix):
            yield info

    def _list(self, prefix: str) -> list[ObjectInfo]:
        out = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [d for d in dirnames if d != STAGING]
            for name in filenames:
                path = Path(dirpath) / name
                key = str(path.relative_to(self.root))
                # Files dpvault never writes (an editor's backup, .nfs* on NFS) are not objects.
                if valid_key(key) and key.startswith(prefix):
                    with contextlib.suppress(FileNotFoundError):
                        st = path.stat()
                        out.append(ObjectInfo(key, st.st_size, st.st_mtime))
        return out

    @contextlib.asynccontextmanager
    async def local_copy(self, key: str) -> AsyncIterator[Path]:
        path = self._path(key)
        if not await asyncio.to_thread(path.is_file):
            raise ObjectNotFoundError(key)
        yield path  # the object itself: objects are never written in place, only replaced


def _open_exclusive(path: Path) -> BinaryIO:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return os.fdopen(fd, "wb")


def _lock(file: BinaryIO, retain_until: float) -> None:
    """Record the lock on the staging file (so the object is never visible unlocked), if xattrs exist."""
    with contextlib.suppress(OSError):  # ENOTSUP: the state database's retain_until still protects it
        os.setxattr(file.fileno(), LOCK_XATTR, repr(float(retain_until)).encode())


def _locked_until(path: Path) -> float | None:
    try:
        return float(os.getxattr(path, LOCK_XATTR))
    except (OSError, ValueError):  # no such file, no lock, no xattrs: nothing to refuse
        return None


def _publish(file: BinaryIO, staging: Path, target: Path) -> None:
    file.flush()
    os.fsync(file.fileno())
    file.close()
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.replace(staging, target)
    fsync_dir(target.parent)


def _discard(file: BinaryIO, staging: Path) -> None:
    with contextlib.suppress(OSError):
        file.close()
    staging.unlink(missing_ok=True)

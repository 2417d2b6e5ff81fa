"""The Datastore port: the contract every place backup bytes live must keep.

The contract suite ``tests/contracts/test_datastore.py`` runs against every implementation.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from dpvault.errors import DpvaultError, PermanentError

CHUNK = 1 << 20  # what implementations read and write at a time: memory stays flat with object size
_KEY = re.compile(r"^[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)*$")
_WRITER = re.compile(r"^[A-Za-z0-9-]{1,64}$")


class ObjectNotFoundError(LookupError):
    """No object under the key."""


class DatastoreError(DpvaultError):
    """The datastore failed (not the data): its message names the store, never a secret."""


class DatastoreFullError(DatastoreError, PermanentError):
    """The datastore ran out of space (or quota): nothing more can be written until it is freed."""


class DatastoreRefusedError(DatastoreError, PermanentError):
    """The datastore refuses writes (read-only, permissions, I/O errors): retrying will not help."""


class DatastoreUnavailableError(DatastoreError):
    """The datastore cannot be reached now (network, timeouts, 5xx): transient, so the job is retried."""

    code = "UserErrorVaultStoreUnavailable"  # the UserFacingError code a job shows if it gives up


class DatastoreConfigError(DatastoreError, PermanentError):
    """The datastore is not set up right (a bad URL, missing credentials, no such container or bucket):
    found at start-up and said in one line, naming the variable or setting to fix, never its value."""


class ObjectLockedError(DatastoreError, PermanentError):
    """The object is under a retention lock until a later date: the store refused to delete it."""


@dataclass(frozen=True, slots=True)
class Written:
    """An object just put: what was streamed into it."""

    key: str
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int
    modified: float  # seconds since the epoch, when the object became visible


def valid_key(key: str) -> bool:
    return bool(_KEY.match(key)) and ".." not in key


def check_key(key: str) -> str:
    """A key, or ValueError: never a path that could leave the store."""
    if not valid_key(key):
        raise ValueError(f"invalid datastore key {key!r}")
    return key


def check_writer(writer: str) -> str:
    if not _WRITER.match(writer):
        raise ValueError(f"invalid writer id {writer!r}")
    return writer


class Datastore(Protocol):
    async def put(
        self,
        key: str,
        source: AsyncIterable[bytes],
        *,
        writer: str = "dpvault",
        retain_until: float | None = None,
    ) -> Written:
        """Stream ``source`` into a new object at ``key``, hashing (SHA-256) and counting while
        streaming; memory does not grow with the object. The object becomes visible whole, durably,
        at once, replacing any object at ``key``, or not at all: if ``source`` raises (or the put is
        cancelled) nothing is visible and nothing is left behind. While the put runs it is an
        *incomplete write* of ``writer`` (a job id), kept alive by a heartbeat of the store's own; a
        writer that dies leaves one behind, which ``sweep_incomplete`` removes.

        ``retain_until`` (seconds since the epoch): an object lock. Stores that can enforce one refuse
        ``delete`` before that time with ObjectLockedError (memory; local where the filesystem has
        user xattrs; S3 by Object Lock, in the store itself); the others (Azure Blob) rely on the
        state database's ``retain_until``, which the vault's GC respects everywhere."""
        ...

    def get(self, key: str) -> AsyncIterator[bytes]:
        """The object's bytes in order, in chunks of at most ``CHUNK``. Raises
        ObjectNotFoundError (when iteration starts) if there is none."""
        ...

    async def get_range(self, key: str, start: int, length: int) -> bytes:
        """``length`` bytes of the object from ``start`` (fewer only at its end). ObjectNotFoundError
        if there is no object. For reading chunks out of packs: a few MiB at a time."""
        ...

    async def stat(self, key: str) -> ObjectInfo | None:
        """The object's size and time, or None."""
        ...

    def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        """Every visible object whose key starts with ``prefix`` (incomplete writes are not objects)."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object; idempotent (no object is no error). ObjectLockedError if it was put with
        a ``retain_until`` still in the future, where the store enforces locks (the object stays)."""
        ...

    async def sweep_incomplete(self, *, writer: str | None = None, older_than: float | None = None) -> int:
        """Remove incomplete writes: all of ``writer``'s (a writer known dead: its job's lease passed
        on), and every one whose heartbeat is older than ``older_than`` seconds (its writer died).
        Never removes a live write when ``older_than`` exceeds twice the heartbeat interval. Returns
        how many were removed."""
        ...

    def local_copy(self, key: str) -> AbstractAsyncContextManager[Path]:
        """A seekable local file holding the object, for tools that need one (``pg_restore --jobs``),
        valid inside the context (zero-copy where the store is local). ObjectNotFoundError if none."""
        ...


async def put_bytes(
    store: Datastore, key: str, data: bytes, *, writer: str = "dpvault", retain_until: float | None = None
) -> Written:
    """A small object (a manifest, a pack), put like any other."""

    async def one() -> AsyncIterator[bytes]:
        yield data

    return await store.put(key, one(), writer=writer, retain_until=retain_until)


async def read_bytes(store: Datastore, key: str, *, limit: int = 16 << 20) -> bytes:
    """A small object's bytes (ValueError past ``limit``: a manifest is never that large)."""
    out = bytearray()
    async for chunk in store.get(key):
        out += chunk
        if len(out) > limit:
            raise ValueError(f"object {key!r} is larger than {limit} bytes")
    return bytes(out)

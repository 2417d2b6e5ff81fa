"""A datastore in an object store: an Azure Blob container or an S3 bucket (``obstore``), under an
optional key prefix.

Puts stream: a source that ends within one part (``part_size``, 5 MiB) is one single-request put, a
longer one a multipart upload (S3 parts, Azure blocks) of parts uploaded a few at a time, so memory
stays flat with object size. Either way the object becomes visible at once, when the put (or the
upload's completion: S3 CompleteMultipartUpload, Azure Put Block List) succeeds. A put whose source
raises, or that is cancelled, aborts its upload and leaves nothing visible.

What a writer that dies leaves behind is never visible either: an S3 multipart upload never completed,
or Azure uncommitted blocks. Neither store lets a client find them cheaply, so ``sweep_incomplete``
does not try (it returns 0); the store expires them itself -- on S3 give the bucket a lifecycle rule
``AbortIncompleteMultipartUpload`` (e.g. ``DaysAfterInitiation: 1``); Azure drops uncommitted blocks
after 7 days on its own.

Object locks (``retain_until``): on S3 the object gets an Object Lock retention in COMPLIANCE mode
right after its put (a signed PutObjectRetention through botocore, which obstore cannot send), so S3
itself refuses to delete that version before the date; the bucket must have Object Lock enabled. On
Azure Blob nothing is recorded: version-level immutability is an account feature (not in Azurite),
and the state database's ``retain_until`` -- which the vault's GC respects -- is what protects.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import tempfile
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import obstore
from obstore import exceptions as obx

from dpvault.datastores.base import (
    CHUNK,
    DatastoreConfigError,
    DatastoreError,
    DatastoreRefusedError,
    DatastoreUnavailableError,
    ObjectInfo,
    ObjectLockedError,
    ObjectNotFoundError,
    Written,
    check_key,
    check_writer,
    valid_key,
)

if TYPE_CHECKING:
    from obstore.store import ObjectStore

PART = 5 << 20  # S3's smallest part: objects up to this size are one single put
CONCURRENCY = 4  # parts in flight per put: memory per put is about (CONCURRENCY + 1) * PART
_HASH_IN_THREAD = 256 << 10
_STATUS = re.compile(r"status code: (\d{3})")
PROBE_PREFIX = ".dpvault-probe/"  # never a valid key: listings skip it


@dataclass(frozen=True)
class S3Lock:
    """What botocore needs to reach the same bucket as obstore: object-lock retention and the deletes
    of versioned (Object Lock) buckets, which obstore's API cannot express."""

    bucket: str
    prefix: str
    region: str
    endpoint: str | None = None
    access_key_id: str = field(default="", repr=False)
    secret_access_key: str = field(default="", repr=False)
    session_token: str | None = field(default=None, repr=False)


class _AbortedError(Exception):
    """The put was cancelled: raised into the upload so obstore aborts it."""


class _Source:
    """The caller's source, hashed and counted as obstore pulls it; ``abort`` makes the next pull (or
    the one waiting) raise, which is how a cancelled put aborts its multipart upload."""

    def __init__(self, source: AsyncIterable[bytes]) -> None:
        self._it = aiter(source)
        self._abort = asyncio.Event()
        self.digest = hashlib.sha256()
        self.size = 0
        self.ended = False
        self.failure: BaseException | None = None  # what the source raised: re-raised as is

    def abort(self) -> None:
        self._abort.set()

    async def _next(self) -> bytes | None:
        pull = asyncio.ensure_future(anext(self._it))
        stop = asyncio.ensure_future(self._abort.wait())
        try:
            await asyncio.wait({pull, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if not pull.done():
            pull.cancel()
            with contextlib.suppress(BaseException):
                await pull
            raise _AbortedError
        try:
            chunk = pull.result()
        except StopAsyncIteration:
            self.ended = True
            return None
        except BaseException as exc:
            self.failure = exc
            raise
        if len(chunk) >= _HASH_IN_THREAD:  # hashlib releases the GIL: the loop stays free
            await asyncio.to_thread(self.digest.update, chunk)
        else:
            self.digest.update(chunk)
        self.size += len(chunk)
        return chunk

    async def head(self, limit: int) -> list[bytes]:
        """Chunks up to ``limit`` bytes (or the whole source, if it ends first)."""
        chunks: list[bytes] = []
        total = 0
        while total < limit and (chunk := await self._next()) is not None:
            if chunk:
                chunks.append(chunk)
                total += len(chunk)
        return chunks

    async def rest(self, head: list[bytes]) -> AsyncIterator[bytes]:
        for chunk in head:
            yield chunk
        head.clear()  # the upload holds its own copies from here on
        while (chunk := await self._next()) is not None:
            if chunk:
                yield chunk


class ObjectDatastore:
    """The Datastore port over an obstore ``AzureStore`` or ``S3Store`` (see the module docstring)."""

    def __init__(
        self,
        store: ObjectStore,
        *,
        name: str,
        heartbeat: float = 5.0,
        part_size: int = PART,
        s3: S3Lock | None = None,
        tmp_dir: Path | None = None,
    ) -> None:
        """``name``: how messages name the store (``azure://container/prefix``), never a secret.
        ``s3``: set for S3 stores (object locks, versioned deletes). ``tmp_dir``: where ``local_copy``
        downloads to (the system temp dir by default)."""
        self.store = store
        self.name = name
        self.heartbeat = heartbeat  # the port's; uploads need none (the store keeps them invisible)
        self.part_size = part_size
        self.tmp_dir = tmp_dir
        self._s3 = s3
        self._boto: Any = None

    def __repr__(self) -> str:
        return f"ObjectDatastore({self.name})"

    # -- writing -----------------------------------------------------------------------------

    async def put(
        self,
        key: str,
        source: AsyncIterable[bytes],
        *,
        writer: str = "dpvault",
        retain_until: float | None = None,
    ) -> Written:
        check_key(key)
        check_writer(writer)
        src = _Source(source)
        head = await src.head(self.part_size)  # cancelled here: nothing was sent yet
        if src.ended:
            data = b"".join(head)
            upload = obstore.put_async(self.store, key, data, use_multipart=False)
        else:
            upload = obstore.put_async(
                self.store, key, src.rest(head), chunk_size=self.part_size, max_concurrency=CONCURRENCY
            )
        task = asyncio.ensure_future(upload)
        try:
            result = await asyncio.shield(task)
        except asyncio.CancelledError:
            await self._undo(task, src, key)
            raise
        except BaseException as exc:
            if src.failure is not None and exc is src.failure:
                raise  # the source's own error (obstore aborted the upload)
            raise self._error(exc, key, writing=True) from None
        if retain_until is not None and self._s3 is not None:
            try:
                await self._retain(key, result.get("version"), retain_until)
            except BaseException:
                with contextlib.suppress(Exception):
                    await obstore.delete_async(self.store, key)  # never left visible unlocked
                raise
        return Written(key, src.size, src.digest.hexdigest())

    async def _undo(self, task: asyncio.Future[Any], src: _Source, key: str) -> None:
        """A cancelled put: abort the upload through its source and wait for obstore to finish with
        it; if it had already committed, remove what it made visible."""
        src.abort()
        while not task.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({task})
        if not task.cancelled() and task.exception() is None:
            with contextlib.suppress(Exception):
                await obstore.delete_async(self.store, key)

    async def delete(self, key: str) -> None:
        check_key(key)
        try:
            if self._s3 is not None:
                meta = await obstore.head_async(self.store, key)
                if meta.get("version"):  # a versioned (Object Lock) bucket: every version goes
                    await self._delete_versions(key)
                    return
            await obstore.delete_async(self.store, key)
        except (FileNotFoundError, obx.NotFoundError):
            return
        except DatastoreError:
            raise
        except Exception as exc:
            raise self._error(exc, key) from None

    async def sweep_incomplete(self, *, writer: str | None = None, older_than: float | None = None) -> int:
        """Always 0: a dead writer's upload (S3 parts, Azure uncommitted blocks) is invisible and holds
        no key, and neither obstore nor the stores' cheap APIs can list it by writer; the store
        expires it instead (S3: the bucket's AbortIncompleteMultipartUpload lifecycle rule; Azure:
        uncommitted blocks are dropped after 7 days). A live put is thus never touched."""
        if writer is not None:
            check_writer(writer)
        return 0

    # -- reading -----------------------------------------------------------------------------

    async def get(self, key: str) -> AsyncIterator[bytes]:
        check_key(key)
        try:
            result = await obstore.get_async(self.store, key)
        except Exception as exc:
            raise self._error(exc, key) from None
        stream = result.stream(min_chunk_size=CHUNK // 2)
        while True:
            try:
                chunk = await anext(stream)
            except StopAsyncIteration:
                return
            except Exception as exc:
                raise self._error(exc, key) from None
            view = memoryview(chunk)
            for start in range(0, len(view), CHUNK):
                yield bytes(view[start : start + CHUNK])

    async def get_range(self, key: str, start: int, length: int) -> bytes:
        check_key(key)
        if length > 0:
            try:
                return bytes(await obstore.get_range_async(self.store, key, start=start, length=length))
            except (FileNotFoundError, obx.NotFoundError):
                raise ObjectNotFoundError(key) from None
            except Exception as exc:
                error = self._error(exc, key)
        # Nothing asked for, or a range starting at (or past) the end, which stores refuse: which is it?
        info = await self.stat(key)
        if info is None:
            raise ObjectNotFoundError(key)
        if length <= 0 or start >= info.size:
            return b""
        raise error

    async def stat(self, key: str) -> ObjectInfo | None:
        check_key(key)
        try:
            meta = await obstore.head_async(self.store, key)
        except (FileNotFoundError, obx.NotFoundError):
            return None
        except Exception as exc:
            raise self._error(exc, key) from None
        return ObjectInfo(key, meta["size"], meta["last_modified"].timestamp())

    async def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        # obstore lists whole path segments: list the prefix's directory, keep what starts with it
        directory = prefix.rsplit("/", 1)[0] if "/" in prefix else None
        stream = obstore.list(self.store, directory, chunk_size=1000)
        while True:
            try:
                batch = await anext(stream)
            except StopAsyncIteration:
                return
            except Exception as exc:
                raise self._error(exc, None) from None
            for meta in batch:
                key = meta["path"]
                if key.startswith(prefix) and valid_key(key):
                    yield ObjectInfo(key, meta["size"], meta["last_modified"].timestamp())

    @contextlib.asynccontextmanager
    async def local_copy(self, key: str) -> AsyncIterator[Path]:
        """The object downloaded (streamed) into a private temp dir, removed on exit."""
        with tempfile.TemporaryDirectory(prefix="dpvault-copy-", dir=self.tmp_dir) as tmp:
            path = Path(tmp) / "object"
            with open(path, "wb") as file:  # noqa: ASYNC230 - opening is instant; writes go to a thread
                async for chunk in self.get(key):
                    await asyncio.to_thread(file.write, chunk)
            yield path

    # -- start-up ----------------------------------------------------------------------------

    async def check(self) -> None:
        """Prove the store is reachable and writable: a listing, then a put and a delete of a probe
        object (under a prefix no key can have). DatastoreConfigError or DatastoreUnavailableError."""
        probe = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
        try:
            stream = obstore.list(self.store, None, chunk_size=1)
            with contextlib.suppress(StopAsyncIteration):
                await anext(stream)
            await obstore.put_async(self.store, probe, b"dpvault", use_multipart=False)
            await obstore.delete_async(self.store, probe)
        except Exception as exc:
            error = self._error(exc, None, writing=True)
            if isinstance(error, DatastoreUnavailableError):
                raise error from None
            raise DatastoreConfigError(str(error)) from None

    # -- S3 object locks (botocore) ------------------------------------------------------------

    def _client(self) -> Any:
        if self._boto is None:
            assert self._s3 is not None
            import botocore.session  # only S3 stores with object locks or versioned deletes need it
            from botocore.config import Config

            s3 = self._s3
            session = botocore.session.get_session()
            self._boto = session.create_client(
                "s3",
                region_name=s3.region,
                endpoint_url=s3.endpoint,
                aws_access_key_id=s3.access_key_id,
                aws_secret_access_key=s3.secret_access_key,
                aws_session_token=s3.session_token,
                config=Config(
                    s3={"addressing_style": "path" if s3.endpoint else "auto"},
                    connect_timeout=5,
                    retries={"max_attempts": 5, "mode": "standard"},
                ),
            )
        return self._boto

    def _full_key(self, key: str) -> str:
        assert self._s3 is not None
        return f"{self._s3.prefix}/{key}" if self._s3.prefix else key

    async def _retain(self, key: str, version: str | None, retain_until: float) -> None:
        """COMPLIANCE mode: no one, not even the account's root, can shorten it or delete the version
        before the date (GOVERNANCE could be bypassed by anyone allowed s3:BypassGovernanceRetention,
        which is what an immutable vault must not allow)."""
        args: dict[str, Any] = {
            "Bucket": self._s3.bucket if self._s3 else "",
            "Key": self._full_key(key),
            "Retention": {"Mode": "COMPLIANCE", "RetainUntilDate": datetime.fromtimestamp(retain_until, UTC)},
        }
        if version:
            args["VersionId"] = version
        await self._boto_call(key, lambda: self._client().put_object_retention(**args))

    async def _delete_versions(self, key: str) -> None:
        """Delete every version of ``key`` newest first (deleting only the newest would bring the one
        before back); a version S3 refuses to delete under its retention is ObjectLockedError."""
        assert self._s3 is not None
        bucket, full = self._s3.bucket, self._full_key(key)

        def versions() -> list[str]:
            found: list[tuple[datetime, str]] = []
            pages = self._client().get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=full)
            for page in pages:
                for item in page.get("Versions", []) + page.get("DeleteMarkers", []):
                    if item["Key"] == full:
                        found.append((item["LastModified"], item["VersionId"]))
            return [version for _, version in sorted(found, reverse=True)]

        for version in await self._boto_call(key, versions):
            try:
                await self._boto_call(
                    key, lambda v=version: self._client().delete_object(Bucket=bucket, Key=full, VersionId=v)
                )
            except DatastoreRefusedError:  # S3 says only "Access Denied": was it the lock?
                if await self._retained(full, version):
                    raise ObjectLockedError(
                        f"the object {key} in {self.name} is under a retention lock: not deleted"
                    ) from None
                raise

    async def _retained(self, full: str, version: str) -> bool:
        """Whether the version's retention date lies ahead (HeadObject shows it to callers allowed
        s3:GetObjectRetention; moto's GetObjectRetention answers 500)."""
        assert self._s3 is not None
        bucket = self._s3.bucket
        try:
            found = await self._boto_call(
                full, lambda: self._client().head_object(Bucket=bucket, Key=full, VersionId=version)
            )
        except DatastoreError:
            return False
        until = found.get("ObjectLockRetainUntilDate")
        return until is not None and until > datetime.now(UTC)

    async def _boto_call(self, key: str, call: Callable[[], Any]) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return await asyncio.to_thread(call)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            if code == "InvalidRequest" and "object lock" in str(error.get("Message", "")).lower():
                raise DatastoreConfigError(
                    f"the vault store {self.name} cannot lock objects: enable S3 Object Lock on the bucket"
                ) from None
            raise self._classified(status, code or "error", key) from None
        except BotoCoreError as exc:
            raise DatastoreUnavailableError(
                f"the vault store {self.name} is unavailable ({type(exc).__name__}); retrying later may work"
            ) from None

    # -- errors --------------------------------------------------------------------------------

    def _error(self, exc: BaseException, key: str | None, *, writing: bool = False) -> Exception:
        """An obstore (or network) error as the port's: its message names the store and an HTTP
        status or kind, never the store's response or a credential."""
        if isinstance(exc, FileNotFoundError | obx.NotFoundError):
            if key is not None and not writing:
                return ObjectNotFoundError(key)
            return DatastoreConfigError(
                f"the vault store {self.name} does not exist (no such container or bucket)"
            )
        if isinstance(exc, obx.PermissionDeniedError | obx.UnauthenticatedError):
            return DatastoreRefusedError(
                f"the vault store {self.name} refuses dpvault's credentials (access denied): check them"
            )
        if isinstance(exc, DatastoreError | ObjectNotFoundError):
            return exc  # type: ignore[return-value]
        match = _STATUS.search(str(exc))
        if match is None:
            kind = (
                "timed out"
                if "timed out" in str(exc).lower() or "timeout" in str(exc).lower()
                else "no connection"
            )
            return DatastoreUnavailableError(
                f"the vault store {self.name} is unavailable ({kind}); retrying later may work"
            )
        return self._classified(int(match.group(1)), "", key)

    def _classified(self, status: int, code: str, key: str | None) -> DatastoreError:
        if status == 404 and (key is None or code in ("NoSuchBucket", "ContainerNotFound")):
            return DatastoreConfigError(
                f"the vault store {self.name} does not exist (no such container or bucket)"
            )
        if status in (401, 403):
            return DatastoreRefusedError(
                f"the vault store {self.name} refuses dpvault's credentials (HTTP {status}): check them"
            )
        if status == 0 or status >= 500 or status in (408, 429):
            return DatastoreUnavailableError(
                f"the vault store {self.name} is unavailable (HTTP {status or 'error'}); retrying later may work"
            )
        return DatastoreRefusedError(
            f"the vault store {self.name} refused the request (HTTP {status} {code})".strip()
        )


__all__ = ["PART", "ObjectDatastore", "S3Lock"]

"""Format 2's data path: content-defined chunks, sealed one by one, stored once per vault in packs.

Writing (``PackWriter``): the stream is cut into chunks (FastCDC over the *uncompressed* engine
stream, so unchanged data gives unchanged chunks); each is named by the vault's keyed hash of its
plaintext, and one the vault already holds is not written again. A new chunk is compressed (zstd)
and sealed (AES-256-GCM, bound to its id), and appended to the pack being filled; a full pack is
written whole as one object (``packs/<pp>/<pack-id>.pack``, its id the SHA-256 of its bytes), then
recorded with its chunks in the vault's index (the state database). Packs end with a sealed trailer
listing their chunks, so a pack describes itself.

Reading (``PointReader``): a file's chunks are looked up in the index, read with ranged gets
(adjacent chunks of one pack in one request), opened, decompressed, and checked against their ids.
A pack that vanished under the reader (garbage collection moved its live chunks) is looked up again.

The CPU work (hashing, compressing, sealing) runs in a small thread pool: the libraries release
the GIL, so it overlaps the dump on the second core.
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import msgspec
import zstandard
from pyfastcdc import FastCDC

from dpvault.datastores.base import Datastore, ObjectNotFoundError, put_bytes
from dpvault.errors import DpvaultError
from dpvault.store import Store
from dpvault.vault import format as vault_format
from dpvault.vault.format import FileEntry
from dpvault.vault.keys import DataKey, SealError

MIN_CHUNK = 256 << 10
AVG_CHUNK = 768 << 10  # with normalized chunking level 2: about 1 MiB on average on dumps
MAX_CHUNK = 4 << 20
PACK_TARGET = 4 << 20  # a pack is written once it holds this much
LOOKUP_CHUNKS, LOOKUP_BYTES = 64, 8 << 20  # chunks asked of the index at once, and their bytes held
ZSTD_LEVEL = 3
MAGIC = b"DPVPACK\x02"
_TRAILER_LEN = struct.Struct("<I")
_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="dpvault-seal")
_local = threading.local()


class ChunkDamagedError(DpvaultError):
    """A chunk that is missing from the index or its pack, or does not open to what its id names."""

    def __init__(self, chunk_id: str, problem: str) -> None:
        super().__init__(f"chunk {chunk_id[:16]}: {problem}")
        self.chunk_id = chunk_id
        self.problem = problem


def _compressor() -> zstandard.ZstdCompressor:
    found = getattr(_local, "zc", None)
    if found is None:
        found = _local.zc = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    return found


def _decompressor() -> zstandard.ZstdDecompressor:
    found = getattr(_local, "zd", None)
    if found is None:
        found = _local.zd = zstandard.ZstdDecompressor()
    return found


def chunk_aad(chunk_id: str) -> bytes:
    return b"dpvault-chunk:" + chunk_id.encode()


def seal_chunk(key: DataKey, chunk_id: str, plaintext: bytes) -> bytes:
    return key.seal(_compressor().compress(plaintext), chunk_aad(chunk_id))


def open_chunk(key: DataKey, chunk_id: str, sealed: bytes | memoryview, raw_length: int) -> bytes:
    """The chunk's plaintext; ChunkDamagedError unless it authenticates and hashes to its id."""
    try:
        plain = _decompressor().decompress(key.open(sealed, chunk_aad(chunk_id)), max_output_size=raw_length)
    except (SealError, zstandard.ZstdError):
        raise ChunkDamagedError(chunk_id, "corrupt (does not authenticate)") from None
    if len(plain) != raw_length or key.chunk_id(plain) != chunk_id:
        raise ChunkDamagedError(chunk_id, "corrupt (does not match its id)")
    return plain


async def cut(source: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """Content-defined chunks of a stream. Cutting a buffer again from the start of its last
    (unfinished) chunk gives the cuts one pass over the whole stream would."""
    cdc = FastCDC(AVG_CHUNK, min_size=MIN_CHUNK, max_size=MAX_CHUNK, normalized_chunking=2)
    buf = bytearray()

    def cuts(data: bytes | bytearray) -> list[tuple[int, int]]:
        return [(c.offset, c.length) for c in cdc.cut_buf(data)]

    async for data in source:
        buf += data
        if len(buf) < 2 * MAX_CHUNK:
            continue
        found = await asyncio.get_running_loop().run_in_executor(_POOL, cuts, buf)
        pieces = [bytes(buf[offset : offset + length]) for offset, length in found[:-1]]
        del buf[: found[-1][0]]  # no copy of the buffer is kept: memory stays at about 2 x MAX_CHUNK
        for piece in pieces:
            yield piece
    if buf:
        for offset, length in cuts(buf):
            yield bytes(buf[offset : offset + length])


@dataclass
class Written:
    """What one PackWriter wrote: new packs, new chunks and their bytes, chunks found already stored."""

    packs: int = 0
    chunks: int = 0
    stored_bytes: int = 0
    reused_chunks: int = 0
    reused_bytes: int = 0


@dataclass
class _Pack:
    blobs: list[bytes] = field(default_factory=list)
    entries: list[tuple[str, int, int, int]] = field(default_factory=list)  # (id, offset, length, raw)
    size: int = len(MAGIC)


class PackWriter:
    """Writes chunks of one backup into a vault: each new chunk once, in packs."""

    def __init__(
        self,
        store: Store,
        datastore: Datastore,
        vault_key: str,
        key: DataKey | Callable[[], Awaitable[DataKey]],
        *,
        writer: str,
        retain_until: float | None = None,
        dedupe: bool = True,
        rehome: bool = False,
    ) -> None:
        """``dedupe``: skip chunks the vault holds already (not for a repack). ``rehome``: point the
        index entries of the chunks written here at their new copies (a repack)."""
        self.store = store
        self.datastore = datastore
        self.vault_key = vault_key
        # The data key, or how to get it: a vault's key is made when its first chunk is, so a first
        # backup that fails before writing anything leaves nothing behind.
        self._key = key
        self.writer = writer
        self.retain_until = retain_until
        self.dedupe = dedupe
        self.rehome = rehome
        self.written = Written()
        self._pack = _Pack()
        self._mine: set[str] = set()  # chunks this writer holds (written or waiting in its pack)
        self._flushing: set[asyncio.Task[None]] = set()
        self._sealing: list[asyncio.Future[tuple[str, bytes, int]]] = []
        # Chunks whose presence in the index is not asked yet: looked up together (many small files
        # -- blobs -- would otherwise cost a state-database read per chunk).
        self._pending: dict[str, bytes] = {}
        self._pending_bytes = 0

    @property
    def key(self) -> DataKey:
        """The data key (once a chunk went through ``add_file``, or given at construction)."""
        assert isinstance(self._key, DataKey), "no chunk yet: the data key was not needed"
        return self._key

    async def data_key(self) -> DataKey:
        if not isinstance(self._key, DataKey):
            self._key = await self._key()
        return self._key

    async def add_file(self, name: str, source: AsyncIterable[bytes]) -> FileEntry:
        """Chunk, dedupe and store a stream; its entry for the manifest (size, SHA-256, chunk ids)."""
        digest = hashlib.sha256()
        size = 0
        ids: list[str] = []
        loop = asyncio.get_running_loop()

        def name_it(chunk: bytes) -> str:
            digest.update(chunk)  # in stream order: one chunk at a time goes through here
            return self.key.chunk_id(chunk)

        async for chunk in cut(source):
            await self.data_key()
            chunk_id = await loop.run_in_executor(_POOL, name_it, chunk)
            ids.append(chunk_id)
            size += len(chunk)
            await self.add_chunk(chunk_id, chunk)
        return FileEntry(name=name, size=size, sha256=digest.hexdigest(), chunks=ids)

    def reuse(self, entry: FileEntry) -> FileEntry:
        """A file of an earlier point, unchanged at its source: its chunks are the vault's already
        (the caller checked them in the index while this backup's point was ``writing``, which keeps
        garbage collection away), so nothing is read or written."""
        self._mine.update(entry.chunks)
        self.written.reused_chunks += len(entry.chunks)
        self.written.reused_bytes += entry.size
        return entry

    async def add_chunk(self, chunk_id: str, plaintext: bytes) -> None:
        if chunk_id in self._mine:
            self.written.reused_chunks += 1
            self.written.reused_bytes += len(plaintext)
            return
        self._mine.add(chunk_id)
        if self.dedupe:
            self._pending[chunk_id] = plaintext
            self._pending_bytes += len(plaintext)
            if len(self._pending) >= LOOKUP_CHUNKS or self._pending_bytes >= LOOKUP_BYTES:
                await self._look_up()
            return
        await self._seal(chunk_id, plaintext)

    async def _look_up(self) -> None:
        """The pending chunks the index has are reused; the others are sealed and written."""
        pending, self._pending, self._pending_bytes = self._pending, {}, 0
        if not pending:
            return
        async with self.store.read() as tx:
            known = await tx.known_chunks(self.vault_key, list(pending))
        for chunk_id, plaintext in pending.items():
            if chunk_id in known:
                self.written.reused_chunks += 1
                self.written.reused_bytes += len(plaintext)
            else:
                await self._seal(chunk_id, plaintext)

    async def _seal(self, chunk_id: str, plaintext: bytes) -> None:
        loop = asyncio.get_running_loop()
        self._sealing.append(
            loop.run_in_executor(
                _POOL, lambda: (chunk_id, seal_chunk(self.key, chunk_id, plaintext), len(plaintext))
            )
        )
        if len(self._sealing) >= 2:  # at most two chunks in the pool: memory stays flat
            await self._collect(1)

    async def add_sealed(self, chunk_id: str, sealed: bytes, raw_length: int) -> None:
        """A chunk sealed already (a repack moves blobs without opening them)."""
        self._mine.add(chunk_id)
        await self._append(chunk_id, sealed, raw_length)

    async def _collect(self, keep: int = 0) -> None:
        while len(self._sealing) > keep:
            chunk_id, sealed, raw = await self._sealing.pop(0)
            await self._append(chunk_id, sealed, raw)

    async def _append(self, chunk_id: str, sealed: bytes, raw_length: int) -> None:
        pack = self._pack
        pack.entries.append((chunk_id, pack.size, len(sealed), raw_length))
        pack.blobs.append(sealed)
        pack.size += len(sealed)
        self.written.chunks += 1
        self.written.stored_bytes += len(sealed)
        if pack.size >= PACK_TARGET:
            await self._flush()

    async def _flush(self) -> None:
        pack, self._pack = self._pack, _Pack()
        if not pack.entries:
            return
        await self._settle()  # one pack in flight while the next fills
        task = asyncio.create_task(self._write_pack(pack))
        self._flushing.add(task)

    async def _settle(self) -> None:
        """Wait for the pack in flight; its failure (a full store, ...) is this writer's failure: a
        point must never be recorded without every pack it needs."""
        while self._flushing:
            done, _ = await asyncio.wait(self._flushing)
            for task in done:
                self._flushing.discard(task)
                task.result()

    async def _write_pack(self, pack: _Pack) -> None:
        trailer = self.key.seal(msgspec.json.encode(pack.entries), b"dpvault-pack-trailer")
        data = b"".join([MAGIC, *pack.blobs, trailer, _TRAILER_LEN.pack(len(trailer))])
        pack_id = await asyncio.get_running_loop().run_in_executor(
            _POOL, lambda: hashlib.sha256(data).hexdigest()
        )
        await put_bytes(
            self.datastore, vault_format.pack_key(self.vault_key, pack_id), data, writer=self.writer,
            retain_until=self.retain_until,
        )  # fmt: skip
        now = time.time()

        async def record(tx: Any) -> None:
            await tx.insert_pack(
                self.vault_key,
                pack_id,
                size=len(data),
                chunks=pack.entries,
                retain_until=self.retain_until,
                now=now,
            )
            if self.rehome:  # a repack: the chunks' entries move to their new copies, in this transaction
                await tx.move_chunks(self.vault_key, pack_id, [(e[0], e[1]) for e in pack.entries])

        await self.store.transact(record)
        self.written.packs += 1

    async def finish(self) -> Written:
        """Every chunk written and indexed: packs first, then their index entries (each pack's own
        transaction), before the caller writes the manifest."""
        await self._look_up()
        await self._collect()
        await self._flush()
        await self._settle()
        return self.written

    async def abort(self) -> None:
        """Stop: what was sealed or is in flight is dropped (packs already written stay, indexed)."""
        self._pending.clear()
        for future in self._sealing:
            future.cancel()
        self._sealing.clear()
        for task in list(self._flushing):
            task.cancel()
        for task in list(self._flushing):
            try:
                await task
            except BaseException:  # noqa: S110 - aborting: the first error is the one that matters
                pass
        self._flushing.clear()


class PointReader:
    """Reads files of format-2 points out of a vault's packs, checking every chunk."""

    def __init__(self, store: Store, datastore: Datastore, vault_key: str, key: DataKey) -> None:
        self.store = store
        self.datastore = datastore
        self.vault_key = vault_key
        self.key = key

    async def _locate(self, ids: Sequence[str]) -> dict[str, tuple[str, int, int, int]]:
        async with self.store.read() as tx:
            return await tx.chunk_locations(self.vault_key, ids)

    async def read_file(
        self, entry: FileEntry, *, progress: Callable[[int], Any] | None = None
    ) -> AsyncIterator[bytes]:
        """The file's plaintext, chunk by chunk, each checked against its id; the whole is checked
        against the entry's SHA-256 and size at the end (ChunkDamagedError otherwise)."""
        digest = hashlib.sha256()
        size = 0
        loop = asyncio.get_running_loop()
        window = 64  # chunks looked up at a time
        for start in range(0, len(entry.chunks), window):
            ids = entry.chunks[start : start + window]
            for plain in await self._read_chunks(ids):
                await loop.run_in_executor(_POOL, digest.update, plain)
                size += len(plain)
                if progress is not None:
                    progress(len(plain))
                yield plain
        if size != entry.size or digest.hexdigest() != entry.sha256:
            raise ChunkDamagedError(
                entry.chunks[0] if entry.chunks else "-", f"{entry.name} does not hash to its SHA-256"
            )

    async def _read_chunks(self, ids: Sequence[str], *, again: bool = True) -> list[bytes]:
        where = await self._locate(ids)
        for chunk_id in ids:
            if chunk_id not in where:
                raise ChunkDamagedError(chunk_id, "missing from the vault's index")
        out: dict[str, bytes] = {}
        loop = asyncio.get_running_loop()
        try:
            for pack_id, first, last, members in _runs(ids, where):
                data = await self.datastore.get_range(
                    vault_format.pack_key(self.vault_key, pack_id), first, last - first
                )
                view = memoryview(data)
                opened = await asyncio.gather(  # the chunks of one read open side by side, on two cores
                    *(
                        loop.run_in_executor(
                            _POOL,
                            open_chunk,
                            self.key,
                            chunk_id,
                            view[offset - first : offset - first + length],
                            raw,
                        )
                        for chunk_id, offset, length, raw in members
                    )
                )
                out.update(zip((m[0] for m in members), opened, strict=True))
        except ObjectNotFoundError as exc:
            if again:  # a garbage collection moved the chunks meanwhile: where are they now?
                return await self._read_chunks(ids, again=False)
            raise ChunkDamagedError(ids[0], f"its pack is missing ({exc})") from None
        return [out[chunk_id] for chunk_id in ids]

    async def check_exists(self, entry: FileEntry) -> None:
        """``verify --quick``: every chunk indexed, every pack there with its size."""
        where = await self._locate(entry.chunks)
        sizes: dict[str, int] = {}
        for chunk_id in entry.chunks:
            if chunk_id not in where:
                raise ChunkDamagedError(chunk_id, "missing from the vault's index")
            pack_id, offset, length, _ = where[chunk_id]
            if pack_id not in sizes:
                info = await self.datastore.stat(vault_format.pack_key(self.vault_key, pack_id))
                sizes[pack_id] = info.size if info else -1
            if sizes[pack_id] < offset + length:
                raise ChunkDamagedError(chunk_id, f"its pack {pack_id[:16]} is missing or too short")


def _runs(
    ids: Sequence[str], where: dict[str, tuple[str, int, int, int]]
) -> list[tuple[str, int, int, list[tuple[str, int, int, int]]]]:
    """Group the chunks to read into ranged reads: (pack, first byte, end byte, members), members
    of one read adjacent in their pack and in no more than ~8 MiB."""
    runs: list[tuple[str, int, int, list[tuple[str, int, int, int]]]] = []
    for chunk_id in dict.fromkeys(ids):
        pack_id, offset, length, raw = where[chunk_id]
        if runs:
            last_pack, first, end, members = runs[-1]
            if last_pack == pack_id and offset == end and end - first < (8 << 20):
                members.append((chunk_id, offset, length, raw))
                runs[-1] = (last_pack, first, offset + length, members)
                continue
        runs.append((pack_id, offset, offset + length, [(chunk_id, offset, length, raw)]))
    return runs


async def read_trailer(
    datastore: Datastore, key: DataKey, vault_key: str, pack_id: str
) -> list[tuple[str, int, int, int]]:
    """A pack's own list of its chunks (for rebuilding an index from the packs alone)."""
    path = vault_format.pack_key(vault_key, pack_id)
    info = await datastore.stat(path)
    if info is None:
        raise ObjectNotFoundError(path)
    tail = await datastore.get_range(path, info.size - _TRAILER_LEN.size, _TRAILER_LEN.size)
    (length,) = _TRAILER_LEN.unpack(tail)
    sealed = await datastore.get_range(path, info.size - _TRAILER_LEN.size - length, length)
    return [tuple(e) for e in msgspec.json.decode(key.open(sealed, b"dpvault-pack-trailer"))]  # type: ignore[misc]

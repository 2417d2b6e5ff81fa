"""The Engine port: what the protection core asks of an engine. Methods raise
:class:`~dpvault.errors.UserError` (Azure-style codes) for anything the user can fix; any other
exception is a bug or an outage, retried by the job queue."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from dpvault.model.instances.schema import BackupInstance, Datasource

# Connection parameters a credential secret resolves to (PostgreSQL: libpq keywords).
Params = dict[str, str]
# Per-item [count, checksum] of a datasource's content, comparable across a backup and a restore.
Fingerprint = dict[str, list[Any]]


class Dump(Protocol):
    """One dump being taken."""

    def chunks(self) -> AsyncIterator[bytes]:
        """The archive's bytes, in order; raises UserError at the end if the dump failed. Iterate
        once. Closing the iterator early stops the dump."""
        ...

    @property
    def fingerprint(self) -> Fingerprint | None:
        """The fingerprint taken in the dump's own snapshot (when asked for), once the chunks ended."""
        ...


class Engine(Protocol):
    """A backup engine for some datasource types."""

    name: str
    # Canonical (lower-case) datasource types this engine backs up (see ``types.canonical_datasource_type``).
    datasource_types: frozenset[str]
    # What the archive is, as recovery-point manifests record it (e.g. "pg_dump -Fc"), and what an
    # uncompressed stream is (``dump(compress=False)``, for vaults that compress chunks themselves).
    archive_format: str
    stream_format: str

    @property
    def tool_version(self) -> str | None:
        """The version of the tool that writes archives (recorded in each recovery point), if known."""
        ...

    def parse_secret(self, value: str) -> Params:
        """Connection parameters from a credential secret's value (UserError if malformed)."""
        ...

    async def validate(self, params: Params, datasource: Datasource) -> None:
        """The deep checks of a backup configuration: reachable, the datasource named, readable."""
        ...

    def dump(
        self, params: Params, *, fingerprint: bool = False, compress: bool = True
    ) -> AbstractAsyncContextManager[Dump]:
        """Take a dump; the context ends whatever the dump started (processes, snapshots).
        ``compress=False``: the engine's uncompressed stream, so unchanged data gives unchanged bytes
        (vault format 2 chunks, dedupes and compresses it)."""
        ...

    async def check(self, chunks: AsyncIterable[bytes]) -> dict[str, Any]:
        """Check an archive streamed from the vault (consumes all of ``chunks``); returns what it
        found (recorded in the recovery point's details). UserError if it is not a valid archive."""
        ...

    def restore_params(self, params: Params, target: Datasource) -> Params:
        """Connection parameters for restoring into the datasource ``target`` names."""
        ...

    async def check_target(self, params: Params) -> None:
        """UserError unless a restore may write into the target (FailIfExists: it has no data)."""
        ...

    async def restore(self, archive: Path, params: Params, *, owner: str | None = None) -> dict[str, str]:
        """Restore ``archive`` into the target. ``owner`` (the restore job) marks what this restore
        creates until :meth:`release`, so a re-run after a crash replaces its own half-done work and
        never anyone else's. Returns details for the job record."""
        ...

    async def release(self, params: Params, owner: str) -> None:
        """After the restore job's completion is committed: the target is the user's now."""
        ...

    async def drill(self, archive: Path, params: Params, *, owner: str) -> Fingerprint:
        """Restore ``archive`` into a scratch target beside the source ``params`` name, fingerprint it
        and remove it (a re-run with the same ``owner`` replaces its own scratch target)."""
        ...


# -- the optional multi-file capability ------------------------------------------------------------
# An engine whose recovery point is several files (a whole server, blob containers) has, besides the
# single-archive methods above, the methods of :class:`MultiFileEngine`. The protection core asks
# ``getattr(engine, "dump_files", None)``; the engine's single-archive ``dump``/``restore`` refuse.


@dataclass(frozen=True, slots=True)
class SourceFile:
    """One file of a multi-file dump. ``version`` is what the source says of the file's content (a
    blob's ETag); ``chunks`` None means "unchanged since the previous point": the file's ``version``
    equals the one recorded there, so the vault reuses the stored copy without reading it again."""

    name: str
    chunks: AsyncIterator[bytes] | None
    version: str | None = None


class PointFiles(Protocol):
    """The files of one recovery point, as a multi-file restore reads them."""

    @property
    def names(self) -> list[str]: ...

    def sha256(self, name: str) -> str: ...

    def size(self, name: str) -> int: ...

    def read(self, name: str) -> AsyncIterator[bytes]:
        """The file's bytes, every chunk checked as it comes; at the end the whole file is checked
        against the SHA-256 recorded when it was taken (UserError ``UserErrorRecoveryPointCorrupted``
        instead of the last chunk if it differs)."""
        ...

    def local_copy(self, name: str) -> AbstractAsyncContextManager[Path]:
        """A seekable local copy of the file, checked whole before the context is entered."""
        ...


class MultiFileEngine(Engine, Protocol):
    def instance_params(self, instance: BackupInstance) -> Params:
        """What the instance's configuration adds to the connection parameters (the containers of
        ``BlobBackupDatasourceParameters``); merged into them before ``validate`` and ``dump_files``."""
        ...

    def dump_files(self, params: Params, previous: Mapping[str, str]) -> AsyncIterator[SourceFile]:
        """The point's files in order. ``previous``: file name -> version of the files the previous
        point holds and the vault can reuse. Each file's chunks must be consumed before the next."""
        ...

    async def check_file(self, name: str, chunks: AsyncIterator[bytes]) -> dict[str, Any]:
        """Like ``check``, for one file (consumes all of ``chunks``)."""
        ...

    def point_details(self, checks: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
        """The recovery point's details (its metaData) from each file's check (``{"reused": True}``
        for a file reused unread; ``{}`` for each file of an engine whose ``checks_files`` is false)."""
        ...

    def restore_params(self, params: Params, target: Datasource) -> Params: ...

    async def check_restore(self, files: PointFiles, params: Params, target: dict[str, Any]) -> None:
        """What ``restore_files`` would refuse, without writing: UserError. ``target`` is the request's
        ``restoreTargetInfo`` (its criteria are the engine's to read)."""
        ...

    async def restore_files(
        self, files: PointFiles, params: Params, target: dict[str, Any], *, owner: str
    ) -> dict[str, str]:
        """Restore the point (or the items ``target``'s criteria select) into the target; ``owner``
        as for ``restore``. Nothing half-written stays visible when it fails."""
        ...

"""Reading a recovery point for a restore: its bytes must match what was recorded when it was taken
*before* anything is written to a target."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from dpvault.errors import UserError
from dpvault.store import RecoveryPointRow
from dpvault.vault.format import FileEntry, Manifest, PointManifest, UnsupportedFormatError
from dpvault.vault.keys import KeyUnavailableError
from dpvault.vault.packs import ChunkDamagedError, PointReader
from dpvault.vault.points import PointDamagedError, RecoveryPoints


def corrupted(rp_id: str) -> UserError:
    return UserError(
        "UserErrorRecoveryPointCorrupted",
        f"The data of recovery point '{rp_id}' does not match the SHA-256 recorded when it was taken; "
        "nothing was written to the target.",
        "Restore another recovery point; run `dpvault verify` to check the others.",
    )


def format_unsupported(rp_id: str, exc: UnsupportedFormatError) -> UserError:
    return UserError(
        "UserErrorRecoveryPointFormatUnsupported",
        f"Recovery point '{rp_id}' is stored in vault format {exc.found!r}, which this dpvault cannot read; "
        "nothing was written to the target.",
        "Restore with the dpvault version that wrote the point (or a newer one).",
    )


async def check_point(points: RecoveryPoints, rp: RecoveryPointRow) -> Manifest | PointManifest:
    """What a reader checks before it reads (and checks) the bytes: the manifest and the row agree.
    Returns the checked manifest."""
    try:
        return await points.check_manifest(rp)
    except PointDamagedError:
        raise corrupted(rp.id) from None
    except UnsupportedFormatError as exc:
        raise format_unsupported(rp.id, exc) from None
    except KeyUnavailableError as exc:
        raise key_unavailable(rp.id, exc) from None


async def point_files(points: RecoveryPoints, rp: RecoveryPointRow) -> list[tuple[str, str]]:
    """(name, SHA-256) of each file of the point, its manifest checked (a format-1 point: its one
    archive, named ""); UserError like :func:`check_point`."""
    files = getattr(await check_point(points, rp), "files", None)
    if not files:
        return [("", rp.sha256)]
    return [(f.name, f.sha256) for f in files]


def key_unavailable(rp_id: str, exc: Exception) -> UserError:
    return UserError(
        "UserErrorVaultKeyUnavailable",
        f"Recovery point '{rp_id}' cannot be read: {exc}; nothing was written to the target.",
        "Restore the vault's key-encryption key (the data dir's identity/vault.kek, DPVAULT_VAULT_KEK, or the "
        "key stored with dpvault keys set).",
    )


async def verify_point(points: RecoveryPoints, rp: RecoveryPointRow) -> Manifest | PointManifest:
    """The point's manifest once its data re-read to its recorded SHA-256; UserError otherwise."""
    try:
        return await points.verify(rp)
    except PointDamagedError:
        raise corrupted(rp.id) from None
    except KeyUnavailableError as exc:
        raise key_unavailable(rp.id, exc) from None
    except UnsupportedFormatError as exc:
        raise format_unsupported(rp.id, exc) from None


class VerifiedFiles:
    """A multi-file point's files for an engine's restore (``engines.base.PointFiles``): the manifest
    opened once, every chunk and every whole file checked as it is read."""

    def __init__(
        self, rp: RecoveryPointRow, manifest: PointManifest, reader: PointReader, tmp_dir: Path | None
    ) -> None:
        self.rp = rp
        self._entries: dict[str, FileEntry] = {f.name: f for f in manifest.files}
        self._reader = reader
        self._tmp_dir = tmp_dir

    @property
    def names(self) -> list[str]:
        return list(self._entries)

    def sha256(self, name: str) -> str:
        return self._entries[name].sha256

    def size(self, name: str) -> int:
        return self._entries[name].size

    async def read(self, name: str) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._reader.read_file(self._entries[name]):
                yield chunk
        except ChunkDamagedError:
            raise corrupted(self.rp.id) from None

    @contextlib.asynccontextmanager
    async def local_copy(self, name: str) -> AsyncIterator[Path]:
        base = self._tmp_dir or Path(os.environ.get("TMPDIR", "/tmp"))  # noqa: S108 - a private name below
        await asyncio.to_thread(base.mkdir, parents=True, exist_ok=True, mode=0o700)
        path = base / f"restore-{uuid.uuid4().hex}.part"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                async for chunk in self.read(name):
                    await asyncio.to_thread(out.write, chunk)
            yield path
        finally:
            path.unlink(missing_ok=True)


async def open_files(points: RecoveryPoints, rp: RecoveryPointRow) -> VerifiedFiles:
    """The point's files, its manifest checked first; UserError like :func:`check_point`."""
    await check_point(points, rp)
    try:
        manifest, reader = await points.opened(rp)
    except PointDamagedError:
        raise corrupted(rp.id) from None
    except KeyUnavailableError as exc:
        raise key_unavailable(rp.id, exc) from None
    return VerifiedFiles(rp, manifest, reader, points.tmp_dir)

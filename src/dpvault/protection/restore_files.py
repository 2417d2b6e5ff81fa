"""Restore as files (``RestoreFilesTargetInfo``), for every engine: a recovery point's archive is
copied to ``<prefix>.dump`` beside ``<prefix>.dump.sha256``, never overwriting either.

Targets are local directories under the roots the server allows (``serve --restore-root``); a URL
that resolves outside them is refused before anything is written. The copy is re-hashed as it is
written and must equal the SHA-256 recorded when the point was taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote, urlsplit

from dpvault.datastores.local import fsync_dir
from dpvault.errors import UserError
from dpvault.protection.verified import check_point, corrupted
from dpvault.store import RecoveryPointRow
from dpvault.vault.points import PointDamagedError, RecoveryPoints

_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def target_directory(url: str, roots: list[Path]) -> Path:
    """A restore-as-files URL (``file:///dir`` or ``/dir``) resolved inside an allowed root, or UserError."""
    parts = urlsplit(url)
    if parts.scheme not in ("", "file") or (parts.scheme == "file" and parts.netloc not in ("", "localhost")):
        raise UserError(
            "UserErrorRestoreTargetNotSupported",
            f"Restoring as files to '{url}' is not supported: dpvault writes to local directories (file:///...).",
            "Use a file:/// URL under a directory the server allows (serve --restore-root).",
        )
    raw = unquote(parts.path) if parts.scheme == "file" else url
    if not raw.startswith("/") or "\x00" in raw:
        raise UserError(
            "UserErrorInvalidRestoreTarget",
            f"'{url}' is not an absolute path.",
            "Give an absolute file:/// URL.",
        )
    path = Path(os.path.normpath(raw))
    for root in roots:
        root = root.resolve()
        try:
            resolved = path.resolve()
        except OSError:
            break
        if resolved == root or resolved.is_relative_to(root):
            return resolved
    raise UserError(
        "UserErrorRestoreTargetNotAllowed",
        f"'{url}' is outside the directories this server restores files to.",
        f"Use a directory under {', '.join(str(r) for r in roots)} (serve --restore-root).",
    )


def check_prefix(prefix: str) -> str:
    if not _PREFIX.match(prefix):
        raise UserError(
            "UserErrorInvalidFilePrefix",
            f"The filePrefix '{prefix[:60]}' is not valid: letters, digits, '.', '_' and '-' only (1-200).",
            "Choose a simple file name prefix.",
        )
    return prefix


class FileRestorer:
    def __init__(self, points: RecoveryPoints, roots: list[Path]) -> None:
        self.points = points
        self.roots = roots
        for root in roots:
            root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _place(self, target: dict[str, Any]) -> tuple[Path, str]:
        details = target["targetDetails"]
        return target_directory(details["url"], self.roots), check_prefix(details["filePrefix"])

    def check(self, target: dict[str, Any]) -> None:
        """What validateRestore checks of a files target: where it is, and that it is free."""
        directory, prefix = self._place(target)
        if (directory / f"{prefix}.dump").exists():
            raise UserError(
                "UserErrorTargetFileExists",
                f"'{prefix}.dump' already exists in the target directory and recoveryOption is FailIfExists.",
                "Choose another filePrefix or remove the existing file.",
            )

    async def to_files(self, rp: RecoveryPointRow, target: dict[str, Any], owner: str) -> dict[str, str]:
        """Copy the point to ``<prefix>.dump`` and ``<prefix>.dump.sha256``, never overwriting either.

        ``owner`` (the restore job's id) names the staging file, which stays linked to the result
        until the job's completion is committed (then ``release``): a re-run of the same job after a
        crash finishes its own work instead of reporting its own file as someone else's."""
        directory, prefix = self._place(target)
        await check_point(self.points, rp)  # the bytes are checked as they are copied
        final = directory / f"{prefix}.dump"
        sidecar = directory / f"{prefix}.dump.sha256"
        tmp = directory / f".{prefix}.dump.{owner}.partial"

        def exists_error() -> UserError:
            return UserError("UserErrorTargetFileExists", f"'{final.name}' already exists in the target directory.",
                             "Choose another filePrefix.")  # fmt: skip

        def ours() -> bool:
            with contextlib.suppress(OSError):
                return os.path.samefile(tmp, final)
            return False

        def begin() -> BinaryIO | None:
            """The staging file to copy into, or None when an earlier attempt of this job already did."""
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            if ours():
                return None
            if final.exists() or sidecar.is_symlink() or sidecar.exists():
                raise exists_error()
            tmp.unlink(missing_ok=True)  # an earlier attempt of this job that did not finish
            return open(tmp, "xb")

        def finish(dst: BinaryIO, sha: str) -> None:
            dst.flush()
            os.fsync(dst.fileno())
            dst.close()
            if sha != rp.sha256:
                tmp.unlink(missing_ok=True)
                raise corrupted(rp.id)
            try:
                os.link(tmp, final)  # fails if the name appeared meanwhile: never overwrite
            except FileExistsError:
                tmp.unlink(missing_ok=True)
                raise exists_error() from None

        def write_sidecar() -> str:
            # The sidecar the same way: a new file linked into place, never written through a name
            # (a symlink planted there must not redirect the write).
            side_tmp = directory / f".{prefix}.dump.sha256.{owner}.partial"
            side_tmp.unlink(missing_ok=True)
            with open(side_tmp, "x") as f:
                f.write(f"{rp.sha256}  {final.name}\n")
            try:
                os.link(side_tmp, sidecar)
            except FileExistsError:
                if sidecar.is_symlink() or sidecar.read_text() != f"{rp.sha256}  {final.name}\n":
                    raise exists_error() from None
            finally:
                side_tmp.unlink(missing_ok=True)
            fsync_dir(directory)
            return str(final)

        dst = await asyncio.to_thread(begin)
        if dst is not None:
            digest = hashlib.sha256()
            try:
                async for chunk in self.points.read(rp):
                    await asyncio.to_thread(_append, dst, digest, chunk)
            except BaseException as exc:
                dst.close()
                tmp.unlink(missing_ok=True)
                if isinstance(exc, PointDamagedError):
                    raise corrupted(rp.id) from None
                raise
            await asyncio.to_thread(finish, dst, digest.hexdigest())
        path = await asyncio.to_thread(write_sidecar)
        return {"RestoredFile": path, "SHA256": rp.sha256}

    def release(self, target: dict[str, Any], owner: str) -> None:
        """After the job's completion is committed: drop the staging link that marked the files ours."""
        directory, prefix = self._place(target)
        (directory / f".{prefix}.dump.{owner}.partial").unlink(missing_ok=True)


def _append(file: BinaryIO, digest: Any, chunk: bytes) -> None:
    file.write(chunk)
    digest.update(chunk)

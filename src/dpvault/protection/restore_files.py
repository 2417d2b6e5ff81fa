"""Restore as files (``RestoreFilesTargetInfo``), for every engine: a recovery point's archive is
copied to ``<prefix>.dump`` beside ``<prefix>.dump.sha256``, never overwriting either.

Targets are local directories under the roots the server allows (``serve --restore-root``); a URL
that resolves outside them is refused before anything is written. The copy is re-hashed as it is
written and must equal the SHA-256 recorded when the point was taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import glob
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
# The staging names carry the restore job's id (a UUID, 36 characters); the longest name a files
# restore creates is the checksum file's staging name.
_OWNER = "x" * 36
# Where the file system does not say (pathconf): Linux's NAME_MAX and PATH_MAX.
_NAME_MAX, _PATH_MAX = 255, 4096


def _names(prefix: str, owner: str = _OWNER, final: str | None = None) -> tuple[str, str, str, str]:
    """What a files restore creates in the target directory: the dump (``<prefix>.dump``, or
    ``final`` for one file of a multi-file point), its checksum file, and the staging names of both."""
    final = final or f"{prefix}.dump"
    return (final, f"{final}.sha256", f".{final}.{owner}.partial", f".{final}.sha256.{owner}.partial")


def multi_file_names(prefix: str, files: list[str]) -> list[str]:
    """The files a multi-file point (a whole server) restores to: ``<prefix>_<file>``."""
    return [f"{prefix}_{name}" for name in files]


def _fs_limits(directory: Path) -> tuple[int, int]:
    """NAME_MAX and PATH_MAX of the file system ``directory`` is (or will be) on, asked of its
    nearest existing ancestor."""
    probe = directory
    while True:
        try:
            if probe.exists():
                break
        except OSError:  # a component too long to look up
            pass
        if probe.parent == probe:
            return _NAME_MAX, _PATH_MAX
        probe = probe.parent
    limits = []
    for name, default in (("PC_NAME_MAX", _NAME_MAX), ("PC_PATH_MAX", _PATH_MAX)):
        try:
            limits.append(int(os.pathconf(probe, name)) or default)
        except (OSError, ValueError):
            limits.append(default)
    return limits[0], limits[1]


def _too_long(url: str, why: str) -> UserError:
    return UserError(
        "UserErrorInvalidRestoreTarget",
        f"'{url[:200]}' cannot be restored to: {why}.",
        "Choose a shorter directory path.",
    )


def _check_path(url: str, path: Path) -> None:
    """Each component within NAME_MAX, the whole within PATH_MAX (bytes, as the file system counts)."""
    name_max, path_max = _fs_limits(path)
    for part in path.parts[1:]:
        size = len(os.fsencode(part))
        if size > name_max:
            raise _too_long(
                url, f"a path component is {size} bytes, over the file system's limit of {name_max}"
            )
    size = len(os.fsencode(str(path)))
    if size >= path_max:
        raise _too_long(url, f"the path is {size} bytes, over the file system's limit of {path_max - 1}")


def check_names(directory: Path, prefix: str) -> None:
    """The files a restore creates fit the target's file system: each name within NAME_MAX and each
    path within PATH_MAX. Checked before anything is written (validateRestore, restore, the job):
    a name the file system refuses halfway would leave a dump without its checksum file."""
    name_max, path_max = _fs_limits(directory)
    longest = _names(prefix)[3]
    size = len(os.fsencode(longest))
    if size > name_max:
        most = name_max - (size - len(os.fsencode(prefix)))
        raise UserError(
            "UserErrorInvalidFilePrefix",
            f"The filePrefix is too long for the target's file system: the checksum file's staging name "
            f"'.<filePrefix>.dump.sha256.<job id>.partial' would be {size} bytes, over its limit of "
            f"{name_max}. Use at most {most} bytes.",
            "Choose a shorter filePrefix.",
        )
    full = len(os.fsencode(str(directory / longest)))
    if full >= path_max:
        raise _too_long(
            directory.as_uri(),
            f"the restored files' paths would be {full} bytes, over the file system's limit of {path_max - 1}",
        )


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
    _check_path(url, path)
    for root in roots:
        root = root.resolve()
        try:
            resolved = path.resolve()
        except OSError:
            break
        if resolved == root or resolved.is_relative_to(root):
            _check_path(url, resolved)  # symbolic links may have made it longer
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
        directory = target_directory(details["url"], self.roots)
        prefix = check_prefix(details["filePrefix"])
        check_names(directory, prefix)
        return directory, prefix

    def check(self, target: dict[str, Any], files: list[str] | None = None) -> None:
        """What validateRestore checks of a files target: where it is, and that it is free.
        ``files``: the files of a multi-file point."""
        directory, prefix = self._place(target)
        for final in multi_file_names(prefix, files) if files else [f"{prefix}.dump"]:
            if (directory / final).exists():
                raise UserError(
                    "UserErrorTargetFileExists",
                    f"'{final}' already exists in the target directory and recoveryOption is FailIfExists.",
                    "Choose another filePrefix or remove the existing file.",
                )

    async def to_files_of(
        self, rp: RecoveryPointRow, target: dict[str, Any], owner: str, files: list[tuple[str, str]]
    ) -> dict[str, str]:
        """A multi-file point: each ``(name, sha256)`` file to ``<prefix>_<name>`` with its checksum
        file; if one fails, what the others wrote goes too (their staging links mark them ours)."""
        directory, prefix = self._place(target)
        finals = multi_file_names(prefix, [name for name, _ in files])
        result: dict[str, str] = {"SHA256": rp.sha256}
        paths = []
        try:
            for (name, sha256), final in zip(files, finals, strict=True):
                details = await self.to_files(rp, target, owner, file=(name, sha256, final))
                paths.append(details["RestoredFile"])
                result[f"SHA256:{final}"] = sha256
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                for final in finals:
                    await asyncio.to_thread(_undo, directory, prefix, owner, final)
            raise
        result["RestoredFiles"] = ",".join(paths)
        return result

    async def to_files(
        self,
        rp: RecoveryPointRow,
        target: dict[str, Any],
        owner: str,
        *,
        file: tuple[str, str, str] | None = None,
    ) -> dict[str, str]:
        """Copy the point to ``<prefix>.dump`` and ``<prefix>.dump.sha256``, never overwriting either.

        ``owner`` (the restore job's id) names the staging file, which stays linked to the result
        until the job's completion is committed (then ``release``): a re-run of the same job after a
        crash finishes its own work instead of reporting its own file as someone else's."""
        directory, prefix = self._place(target)
        await check_point(self.points, rp)  # the bytes are checked as they are copied
        # ``file``: (name in the point, its SHA-256, the file to write) of one file of a multi-file point
        source, expected, final_name = file if file else (None, rp.sha256, None)
        final, sidecar, tmp, side_tmp = (directory / name for name in _names(prefix, owner, final_name))

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
            if sha != expected:
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
            side_tmp.unlink(missing_ok=True)
            with open(side_tmp, "x") as f:
                f.write(f"{expected}  {final.name}\n")
            try:
                os.link(side_tmp, sidecar)
            except FileExistsError:
                if sidecar.is_symlink() or sidecar.read_text() != f"{expected}  {final.name}\n":
                    raise exists_error() from None
            finally:
                side_tmp.unlink(missing_ok=True)
            fsync_dir(directory)
            return str(final)

        dst = await asyncio.to_thread(begin)
        try:
            if dst is not None:
                digest = hashlib.sha256()
                try:
                    async for chunk in self.points.read(rp, source):
                        await asyncio.to_thread(_append, dst, digest, chunk)
                except BaseException:
                    dst.close()
                    tmp.unlink(missing_ok=True)
                    raise
                await asyncio.to_thread(finish, dst, digest.hexdigest())
            path = await asyncio.to_thread(write_sidecar)
        except asyncio.CancelledError:
            raise  # the server stopping, like a crash: the job's re-run finishes or redoes it
        except Exception as exc:
            # A failed attempt leaves nothing: no staging file, no dump without its checksum file.
            await asyncio.to_thread(_undo, directory, prefix, owner, final_name)
            if isinstance(exc, PointDamagedError):
                raise corrupted(rp.id) from None
            if isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG:
                raise _too_long(directory.as_uri(), "the file system refused a name as too long") from exc
            raise
        return {"RestoredFile": path, "SHA256": expected}

    def release(self, target: dict[str, Any], owner: str) -> None:
        """After the job's completion is committed: drop the staging links that marked the files ours."""
        directory, prefix = self._place(target)
        for final in _finals(directory, prefix, owner):
            (directory / _names(prefix, owner, final)[2]).unlink(missing_ok=True)

    def abandon(self, target: dict[str, Any], owner: str) -> None:
        """The job gave up (or its attempt failed): remove what it wrote, never anything else."""
        try:
            directory, prefix = self._place(target)
        except UserError:
            return  # a target it could never have written to
        for final in _finals(directory, prefix, owner):
            _undo(directory, prefix, owner, final)


def _finals(directory: Path, prefix: str, owner: str) -> list[str]:
    """The files the job ``owner`` may have made: ``<prefix>.dump``, and the ``<prefix>_*`` files of a
    multi-file point whose staging files (named with the job's id) are there."""
    finals = {f"{prefix}.dump"}
    suffix = f".{owner}.partial"
    with contextlib.suppress(OSError):
        for entry in directory.glob(f".{glob.escape(prefix)}_*{suffix}"):
            final = entry.name[1 : -len(suffix)]
            finals.add(final.removesuffix(".sha256") if final.endswith(".sha256") else final)
    return sorted(finals)


def _undo(directory: Path, prefix: str, owner: str, final_name: str | None = None) -> None:
    """Take back what the restore job ``owner`` made in ``directory``: the dump while it is still
    linked to the job's staging file (so it is the job's), the checksum file naming it, and both
    staging files. Files of anyone else stay."""
    final, sidecar, tmp, side_tmp = (directory / name for name in _names(prefix, owner, final_name))
    try:
        ours = os.path.samefile(tmp, final)
    except OSError:
        ours = False
    if ours:
        with contextlib.suppress(OSError):
            if not sidecar.is_symlink() and sidecar.read_text().endswith(f"  {final.name}\n"):
                sidecar.unlink()
        final.unlink(missing_ok=True)
    tmp.unlink(missing_ok=True)
    side_tmp.unlink(missing_ok=True)


def _append(file: BinaryIO, digest: Any, chunk: bytes) -> None:
    file.write(chunk)
    digest.update(chunk)

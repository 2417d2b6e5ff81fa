"""A datastore in a local directory (the default: ``<data-dir>/vault``)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

_KEY = re.compile(r"^[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)*$")
STAGING = ".staging"
CHUNK = 1 << 20


def manifest_key(object_key: str) -> str:
    """The manifest written beside a backup object (docs/design/vault-format.md)."""
    return object_key.removesuffix(".dump") + ".json"


def _valid_key(key: str) -> bool:
    return bool(_KEY.match(key)) and ".." not in key


def _check_key(key: str) -> str:
    if not _valid_key(key):
        raise ValueError(f"invalid datastore key {key!r}")
    return key


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Staged:
    """An object being written: append with ``write``; ``size`` and ``sha256`` follow the bytes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: BinaryIO = open(path, "xb")
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)
        self._hash.update(chunk)
        self.size += len(chunk)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def _close(self, *, sync: bool) -> None:
        if not self._file.closed:
            if sync:
                self._file.flush()
                os.fsync(self._file.fileno())
            self._file.close()


class LocalDatastore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._staging = root / STAGING
        self._staging.mkdir(parents=True, exist_ok=True, mode=0o700)

    def path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def stage(self, owner: str = "x") -> Staged:
        """A new staging object. ``owner`` (a job id) lets ``discard_owner`` find a dead attempt's leftovers."""
        if not re.match(r"^[A-Za-z0-9-]{1,64}$", owner):
            raise ValueError(f"invalid staging owner {owner!r}")
        return Staged(self._staging / f"{owner}.{uuid.uuid4().hex}.partial")

    def discard_owner(self, owner: str) -> int:
        """Remove staging files of ``owner``: earlier attempts of a job that is running again."""
        removed = 0
        for entry in self._staging.glob(f"{owner}.*.partial"):
            entry.unlink(missing_ok=True)
            removed += 1
        return removed

    def publish(self, staged: Staged, key: str) -> None:
        target = self.path(key)
        staged._close(sync=True)
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.replace(staged.path, target)
        fsync_dir(target.parent)

    def discard(self, staged: Staged) -> None:
        staged._close(sync=False)
        staged.path.unlink(missing_ok=True)

    def write_bytes(self, key: str, data: bytes) -> None:
        """A small object (a manifest), published atomically."""
        staged = self.stage()
        staged.write(data)
        self.publish(staged, key)

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def open(self, key: str) -> BinaryIO:
        return open(self.path(key), "rb")

    def hash(self, key: str) -> tuple[int, str]:
        """(size, SHA-256) of an object, streamed."""
        digest = hashlib.sha256()
        size = 0
        with self.open(key) as f:
            while chunk := f.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
        return size, digest.hexdigest()

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def keys(self) -> Iterator[str]:
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [d for d in dirnames if d != STAGING]
            for name in filenames:
                key = str((Path(dirpath) / name).relative_to(self.root))
                # Files dpvault never writes (an editor's backup, .nfs* on NFS) are not objects.
                if _valid_key(key):
                    yield key

    def sweep(self, *, stale_after: float, referenced: set[str] | None) -> int:
        """Remove staging files untouched for ``stale_after`` seconds (their writer died) and, unless
        ``referenced`` is None, published objects older than that which no recovery point refers to.
        Returns how many files were removed."""
        cutoff = time.time() - stale_after
        removed = 0
        for entry in self._staging.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if entry.stat().st_mtime < cutoff:
                    entry.unlink()
                    removed += 1
        if referenced is None:
            return removed
        for key in list(self.keys()):
            if key in referenced:
                continue
            with contextlib.suppress(FileNotFoundError):
                if self.path(key).stat().st_mtime < cutoff:
                    self.path(key).unlink()
                    removed += 1
        return removed

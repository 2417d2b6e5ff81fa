"""Fixtures of the reliability suite: small file systems the tests fill up, and their cleanup."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


def _mount_tmpfs(path: Path, size: str, inodes: int | None = None) -> str | None:
    """Mount a tmpfs of ``size`` at ``path``; None, or why the machine does not allow it."""
    if os.geteuid() != 0:
        return "mounting a small file system needs root, and the tests do not run as root"
    if shutil.which("mount") is None:
        return "no mount(8) on this machine"
    proc = subprocess.run(
        [
            "mount",
            "-t",
            "tmpfs",
            "-o",
            f"size={size},mode=0755" + (f",nr_inodes={inodes}" if inodes else ""),
            "tmpfs",
            str(path),
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        return f"this machine forbids mounts (mount: {proc.stderr.strip() or proc.returncode})"
    return None


@pytest.fixture
def small_fs() -> Iterator[Callable[..., Path]]:
    """``small_fs("8m", inodes=None)``: a fresh tmpfs of that size (and that many inodes), unmounted
    and removed after the test. Skips the test, saying why, only where the machine forbids mounts."""
    mounted: list[Path] = []

    def make(size: str, *, inodes: int | None = None) -> Path:
        path = Path(tempfile.mkdtemp(prefix="dpvault-smallfs-"))
        reason = _mount_tmpfs(path, size, inodes)
        if reason is not None:
            path.rmdir()
            pytest.skip(reason)
        mounted.append(path)
        return path

    yield make
    for path in mounted:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)  # still in use: detach
        with contextlib.suppress(OSError):
            path.rmdir()


def fill(directory: Path) -> Path:
    """Fill the file system of ``directory`` to the last byte with one file; returns the file."""
    filler = directory / "filler"
    chunk = b"\0" * (64 * 1024)
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError:
            pass
        with contextlib.suppress(OSError):  # the last partial chunk, a byte at a time
            while True:
                f.write(b"\0")
    return filler

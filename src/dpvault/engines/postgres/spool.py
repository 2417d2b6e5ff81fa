"""Dumps taken ahead of their turn: a ``pg_dump`` writing into a private spool file that is read
back, from its start, while it is still being written.

A whole-server backup hands the vault one file at a time, in order; the databases after the one
streaming now can be dumped meanwhile, on the cores the current one leaves idle. Each runs with its
stdout on a spool file (``O_EXCL``, mode 0600, in the engine's temporary directory) whose name is
removed as soon as it is opened twice (writer and reader): nothing is left on disk whatever
happens to the process, and the space goes back when the reader is closed. Reading follows the
writer (a read at the end of the file waits for more unless ``pg_dump`` has exited), so a spool
becomes the current file before its dump has ended and streams from there. Memory stays flat: one
chunk at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

CHUNK = 1 << 20
_POLL = 0.02  # seconds between looks at a spool whose writer is ahead of nobody


class Spool:
    """One ``pg_dump`` into an unnamed spool file (see the module docstring)."""

    def __init__(self, argv: list[str], env: dict[str, str], directory: Path) -> None:
        self.argv = argv
        self.env = env
        self.directory = directory
        self.proc: subprocess.Popen[bytes] | None = None
        self._reader: int | None = None
        self._stderr: IO[bytes] | None = None
        self.code: int | None = None

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, name = tempfile.mkstemp(prefix="dpvault-spool-", suffix=".part", dir=self.directory)
        try:
            self._reader = os.open(name, os.O_RDONLY)
        finally:
            os.unlink(name)  # both ends are open: the name is no longer needed
        try:
            self._stderr = tempfile.TemporaryFile(dir=self.directory)
            # Fixed argv, no shell; the connection travels in the environment.
            self.proc = subprocess.Popen(  # noqa: S603
                self.argv, stdout=fd, stderr=self._stderr, env=self.env, stdin=subprocess.DEVNULL
            )
        finally:
            os.close(fd)  # pg_dump holds its own copy

    @property
    def running(self) -> bool:
        if self.proc is None or self.code is not None:
            return False
        self.code = self.proc.poll()
        return self.code is None

    @property
    def failed(self) -> bool:
        """Ended with an error (known without reading the spool)."""
        return not self.running and self.code not in (None, 0)

    def written(self) -> int:
        """Bytes in the spool so far."""
        return os.fstat(self._reader).st_size if self._reader is not None else 0

    def stderr(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    async def chunks(self) -> AsyncIterator[bytes]:
        """The dump's bytes from the start, following the writer until it exits; then its exit code
        is in ``code`` (the caller turns a failure into an error)."""
        assert self._reader is not None
        reader = self._reader
        while True:
            chunk = await asyncio.to_thread(os.read, reader, CHUNK)
            if chunk:
                yield chunk
                continue
            if self.running:
                await asyncio.sleep(_POLL)
                continue
            # The writer has exited: whatever it wrote is in the file; read to its end.
            while chunk := await asyncio.to_thread(os.read, reader, CHUNK):
                yield chunk
            return

    async def close(self) -> None:
        """pg_dump gone, the spool's space released (idempotent)."""
        proc, self.proc = self.proc, None
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            self.code = await asyncio.to_thread(proc.wait) if self.code is None else self.code
        reader, self._reader = self._reader, None
        if reader is not None:
            os.close(reader)
        err, self._stderr = self._stderr, None
        if err is not None:
            err.close()

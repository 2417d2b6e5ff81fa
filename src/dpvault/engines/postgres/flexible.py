"""The PostgreSQL flexible server engine: a whole server per backup, as Azure Backup takes it.

One recovery point holds several files (vault format 2): ``globals.sql`` (``pg_dumpall
--globals-only --no-role-passwords``: roles, tablespaces) and one ``pg_dump -Fc -Z0`` archive per
user database, ``<database>.dump`` (the name percent-encoded where it has to be). Azure's own
databases (``azure_maintenance``, ``azure_sys``) and templates are skipped; ``postgres`` is kept
(Azure skips only its own databases, and users do keep tables there). The instance carries no
credentials: the server is reached through its source mapping (``dpvault sources set <server
id>``), which the protection core resolves.

Backups dump the databases after the one streaming into the vault ahead of their turn, into
private spool files (``spool.py``): up to ``DPVAULT_PG_DUMP_JOBS`` (default: one per core) pg_dumps at
once. Restores go as files (the core's), or into a mapped server -- every database or those an
``ItemLevelRestoreTargetInfo`` names, roles first, FailIfExists checked for all before anything is
written (``server_restore.py``). Restore drills of such points are not supported.

This engine adds the port's optional multi-file capability (``dump_files``); the per-database work
(connecting, pg_dump, the archive check, pg_restore) is the single-database engine's.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import psycopg

from dpvault.engines.base import Fingerprint, Params, PointFiles, SourceFile
from dpvault.engines.postgres import server_restore
from dpvault.engines.postgres.engine import CHUNK, PostgresEngine, _dump_error
from dpvault.engines.postgres.layout import GLOBALS, database_of, file_name
from dpvault.engines.postgres.spool import Spool
from dpvault.engines.postgres.tools import Tools, require, tool_env
from dpvault.errors import UserError
from dpvault.model.instances.schema import Datasource

SKIPPED = ("azure_maintenance", "azure_sys")
_LIST = (
    "SELECT datname FROM pg_database WHERE NOT datistemplate AND datallowconn "
    "AND datname <> ALL(%s) ORDER BY datname"
)


def _not_here(what: str) -> UserError:
    return UserError(
        "UserErrorRestoreTargetNotSupported",
        f"A flexible server's recovery point holds a whole server: {what} is not supported.",
        "Restore into a mapped flexible server (RestoreTargetInfo), or as files (RestoreFilesTargetInfo) into a "
        "blob container.",
    )


class FlexibleServerEngine:
    name = "postgresql-flexible-server"
    datasource_types = frozenset({"microsoft.dbforpostgresql/flexibleservers"})
    archive_format = "pg_dump -Fc (per database) + pg_dumpall --globals-only"
    stream_format = "pg_dump -Fc -Z0 (per database) + pg_dumpall --globals-only"
    # The instance names the server by ARM id only: parameters come from its source mapping.
    uses_source_mapping = True
    # ItemLevelRestoreTargetInfo: the databases ItemPathBasedRestoreCriteria name (server_restore).
    restores_items = True

    def __init__(
        self, tools: Tools | None, *, connect_timeout: int = 10, tmp_dir: Path | None = None
    ) -> None:
        """``tmp_dir``: where dumps taken ahead of their turn are spooled (default: TMPDIR)."""
        self.tools = tools
        self.database = PostgresEngine(tools, connect_timeout=connect_timeout)
        self.tmp_dir = tmp_dir or Path(tempfile.gettempdir())

    @property
    def tool_version(self) -> str | None:
        return self.tools.version if self.tools else None

    def parse_secret(self, value: str) -> Params:
        return self.database.parse_secret(value)

    async def databases(self, params: Params) -> list[str]:
        """The user databases of the server, in name order."""
        conn = await self.database.connect(params)
        async with conn:
            rows = await (await conn.execute(_LIST, (list(SKIPPED),))).fetchall()
        return [str(r[0]) for r in rows]

    async def validate(self, params: Params, datasource: Datasource) -> None:
        """Connect, list the user databases, and run the single-database checks (pg_dump's version,
        read access to everything) against each of them."""
        require(self.tools)
        for name in await self.databases(params):
            info = Datasource(objectType="Datasource", resourceID=datasource.resourceID, resourceName=name)
            await self.database.validate({**params, "dbname": name}, info)

    async def dump_files(self, params: Params, previous: Mapping[str, str]) -> AsyncIterator[SourceFile]:
        """The globals, then each database: the multi-file capability the backup pipeline uses when
        an engine has it (a database has no version to compare: every file is dumped afresh, and the
        vault dedupes unchanged chunks). Each stream must be consumed before the next.

        The databases after the one streaming are dumped meanwhile into spools (``spool.py``), up to
        ``dump_jobs()`` pg_dumps at once, at most ``dump_jobs() - 1`` databases ahead, and only where
        the temporary directory has room for them; a failure of one ahead fails the backup at once."""
        tools = require(self.tools)
        names = await self.databases(params)  # connecting first: a connection's error says why it failed
        yield SourceFile(GLOBALS, _globals(tools, params))
        ahead = _Ahead(self, tools, params, names, dump_jobs(), self.tmp_dir)
        if ahead.jobs > 1 and len(names) > 1:
            ahead.sizes = await self._sizes(params, names)
        try:
            for index, name in enumerate(names):
                spool = ahead.take(index)
                if spool is None:
                    async with self.database.dump({**params, "dbname": name}, compress=False) as dump:
                        yield SourceFile(file_name(name), ahead.current(dump.chunks(), name, index, None))
                    continue
                try:
                    yield SourceFile(file_name(name), ahead.current(spool.chunks(), name, index, spool))
                finally:
                    await spool.close()
        finally:
            await ahead.close()

    async def _sizes(self, params: Params, names: list[str]) -> dict[str, int]:
        """Each database's size (what its spool may take at most: a dump holds no indexes); {} if the
        user may not ask (nothing is dumped ahead then)."""
        try:
            conn = await self.database.connect(params)
            async with conn:
                rows = await (
                    await conn.execute(
                        "SELECT datname, pg_database_size(oid) FROM pg_database WHERE datname = ANY(%s)",
                        (names,),
                    )
                ).fetchall()
        except (UserError, psycopg.Error):
            return {}
        return {str(r[0]): int(r[1]) for r in rows}

    def point_details(self, checks: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
        """The databases the point holds (its metaData) and their tables."""
        databases = [database_of(n) for n in checks if n.endswith(".dump")]
        return {"databases": databases, "tables": sum(int(c.get("tables", 0)) for c in checks.values())}

    async def check_file(self, name: str, chunks: AsyncIterator[bytes]) -> dict[str, Any]:
        """A database archive is checked by pg_restore; the globals must be SQL text."""
        if name != GLOBALS:
            return await self.database.check(chunks)
        head = b""
        async for chunk in chunks:
            head = head or chunk[:4096]
        if b"\0" in head:
            raise UserError(
                "UserErrorBackupArchiveInvalid", "globals.sql is not SQL text.", "Retry the backup."
            )
        return {}

    # -- the single-archive parts of the port: a whole server is not one archive ------------------

    def dump(self, params: Params, *, fingerprint: bool = False, compress: bool = True) -> Any:
        raise _not_here("a single-archive dump")

    async def check(self, chunks: Any) -> dict[str, Any]:
        return await self.database.check(chunks)

    def restore_params(self, params: Params, target: Datasource) -> Params:
        """A server target is reached as its source mapping says (the core resolved it)."""
        return dict(params)

    async def check_target(self, params: Params) -> None:
        raise _not_here("a single-archive restore")

    async def restore(self, archive: Path, params: Params, *, owner: str | None = None) -> dict[str, str]:
        raise _not_here("a single-archive restore")

    async def release(self, params: Params, owner: str) -> None:
        await server_restore.release(self.database, params, owner)

    async def abandon(self, params: Params, owner: str) -> None:
        """What a restore job that gave up left (a crash's half-restored databases and roles) goes."""
        await server_restore.undo(self.database, params, owner)

    async def drill(self, archive: Path, params: Params, *, owner: str) -> Fingerprint:
        raise _not_here("a restore drill")

    def check_restore_request(self, target: dict[str, Any]) -> None:
        """The request's own mistakes (criteria shapes, a bad renameTo), said at the request."""
        server_restore.check_shape(target)

    async def check_restore(self, files: PointFiles, params: Params, target: dict[str, Any]) -> None:
        await server_restore.check(self.database, files, params, target)

    async def restore_files(
        self, files: PointFiles, params: Params, target: dict[str, Any], *, owner: str
    ) -> dict[str, str]:
        """Into the server ``target`` names: its roles, then every database or those the criteria
        select (``server_restore``)."""
        return await server_restore.run(self.database, files, params, target, owner=owner)


async def _globals(tools: Tools, params: Params) -> AsyncIterator[bytes]:
    """``pg_dumpall --globals-only --no-role-passwords`` (pg_dumpall beside pg_dump)."""
    argv = [
        str(Path(tools.pg_dump).with_name("pg_dumpall")),
        "--globals-only",
        "--no-role-passwords",
        "--no-password",
    ]
    env = tool_env(params)
    if params.get("dbname"):  # the database pg_dumpall connects to (a database name, not a secret)
        argv.append(f"--database={params['dbname']}")
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, env=env)  # noqa: S603, ASYNC220
        try:
            assert proc.stdout is not None
            read = proc.stdout.read
            while chunk := await asyncio.to_thread(read, CHUNK):
                yield chunk
            code = await asyncio.to_thread(proc.wait)
        finally:
            if proc.poll() is None:
                proc.kill()
                await asyncio.to_thread(proc.wait)
        if code != 0:
            stderr.seek(0)
            raise _dump_error(stderr.read().decode(errors="replace"), params)


def dump_jobs() -> int:
    """How many pg_dumps a whole-server backup runs at once: ``DPVAULT_PG_DUMP_JOBS`` if set (1: one
    database after another), else one per core."""
    value = os.environ.get("DPVAULT_PG_DUMP_JOBS", "").strip()
    if value.isascii() and value.isdigit() and int(value) >= 1:
        return int(value)
    return os.cpu_count() or 1


def _of_database(exc: UserError, name: str) -> UserError:
    """The error of one database's dump, naming the database."""
    return UserError(
        exc.code,
        f"Database '{name}': {exc.message}",
        exc.recommended_action,
        retryable=exc.retryable,
        user_error=exc.user_error,
    )


_SPOOL_MARGIN = 256 << 20  # room a spool leaves free on the temporary directory's file system


class _Ahead:
    """The databases being dumped ahead of their turn (``FlexibleServerEngine.dump_files``)."""

    def __init__(
        self,
        engine: FlexibleServerEngine,
        tools: Tools,
        params: Params,
        names: list[str],
        jobs: int,
        directory: Path,
    ) -> None:
        self.engine = engine
        self.tools = tools
        self.params = params
        self.names = names
        self.jobs = jobs
        self.directory = directory
        self.sizes: dict[str, int] = {}
        self.spools: dict[int, Spool] = {}
        self.next = 0  # the first database not started yet (neither ahead nor as the current one)
        self._current: Spool | None = None
        self._direct = False

    def take(self, index: int) -> Spool | None:
        """Database ``index``'s spool if it was dumped ahead (None: dump it now)."""
        spool = self.spools.pop(index, None)
        self.next = max(self.next, index + 1)
        return spool

    async def current(
        self, chunks: AsyncIterator[bytes], name: str, index: int, spool: Spool | None
    ) -> AsyncIterator[bytes]:
        """Database ``index``'s bytes, the next ones started meanwhile; an error names its database."""
        self._current, self._direct = spool, spool is None
        try:
            if spool is not None and spool.failed:
                raise _of_database(_dump_error(spool.stderr(), self.params), name)
            self._fill()
            while True:
                try:
                    chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
                except UserError as exc:
                    raise _of_database(exc, name) from None
                yield chunk
                self._fill()
            if spool is not None and spool.code != 0:
                raise _of_database(_dump_error(spool.stderr(), self.params), name)
        finally:
            self._current, self._direct = None, False
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()

    def _running(self) -> int:
        running = sum(1 for s in self.spools.values() if s.running)
        if self._direct or (self._current is not None and self._current.running):
            running += 1
        return running

    def _fill(self) -> None:
        """Start the next databases' dumps while cores and room allow; fail at once if one ahead failed."""
        for index, spool in self.spools.items():
            if spool.failed:
                raise _of_database(_dump_error(spool.stderr(), self.params), self.names[index])
        while (
            self.next < len(self.names)
            and len(self.spools) < self.jobs - 1
            and self._running() < self.jobs
            and self._room_for(self.names[self.next])
        ):
            name = self.names[self.next]
            argv = [self.tools.pg_dump, "-Fc", "-Z0", "--no-password"]
            spool = Spool(argv, tool_env({**self.params, "dbname": name}), self.directory)
            self.spools[self.next] = spool
            self.next += 1
            spool.start()

    def _room_for(self, name: str) -> bool:
        size = self.sizes.get(name)
        if size is None:
            return False
        pending = sum(max(0, self.sizes.get(self.names[i], 0) - s.written()) for i, s in self.spools.items())
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            free = shutil.disk_usage(self.directory).free
        except OSError:
            return False
        return free - pending >= size + _SPOOL_MARGIN

    async def close(self) -> None:
        spools, self.spools = list(self.spools.values()), {}
        for spool in spools:
            await spool.close()

"""The PostgreSQL flexible server engine: a whole server per backup, as Azure Backup takes it.

One recovery point holds several files (vault format 2): ``globals.sql`` (``pg_dumpall
--globals-only --no-role-passwords``: roles, tablespaces) and one ``pg_dump -Fc -Z0`` archive per
user database, ``<database>.dump`` (the name percent-encoded where it has to be). Azure's own databases (``azure_maintenance``, ``azure_sys``) and
templates are skipped; ``postgres`` is kept (Azure skips only its own databases, and users do keep
tables there). The instance carries no credentials: the server is reached through its source
mapping (``dpvault sources set <server id>``), which the protection core resolves.

This engine adds the port's optional multi-file capability (``dump_files``); the per-database work
(connecting, pg_dump, the archive check) is the single-database engine's.
"""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from dpvault.engines.base import Fingerprint, Params, PointFiles, SourceFile
from dpvault.engines.postgres.engine import CHUNK, PostgresEngine, _dump_error
from dpvault.engines.postgres.tools import Tools, require, tool_env
from dpvault.errors import UserError
from dpvault.model.instances.schema import Datasource

SKIPPED = ("azure_maintenance", "azure_sys")
GLOBALS = "globals.sql"
_LIST = (
    "SELECT datname FROM pg_database WHERE NOT datistemplate AND datallowconn "
    "AND datname <> ALL(%s) ORDER BY datname"
)


def file_name(database: str) -> str:
    """``<database>.dump``, the name percent-encoded so that no database name (``/``, ``..``, spaces)
    becomes a path in a directory or a container."""
    return f"{quote(database, safe='')}.dump"


def database_of(name: str) -> str:
    return unquote(name.removesuffix(".dump"))


def _not_here(what: str) -> UserError:
    return UserError(
        "UserErrorRestoreTargetNotSupported",
        f"A flexible server's recovery point holds a whole server: {what} is not supported yet.",
        "Restore as files (RestoreFilesTargetInfo) into a blob container.",
    )


class FlexibleServerEngine:
    name = "postgresql-flexible-server"
    datasource_types = frozenset({"microsoft.dbforpostgresql/flexibleservers"})
    archive_format = "pg_dump -Fc (per database) + pg_dumpall --globals-only"
    stream_format = "pg_dump -Fc -Z0 (per database) + pg_dumpall --globals-only"
    # The instance names the server by ARM id only: parameters come from its source mapping.
    uses_source_mapping = True

    def __init__(self, tools: Tools | None, *, connect_timeout: int = 10) -> None:
        self.tools = tools
        self.database = PostgresEngine(tools, connect_timeout=connect_timeout)

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
        vault dedupes unchanged chunks). Each stream must be consumed before the next."""
        tools = require(self.tools)
        yield SourceFile(GLOBALS, _globals(tools, params))
        for name in await self.databases(params):
            async with self.database.dump({**params, "dbname": name}, compress=False) as dump:
                yield SourceFile(file_name(name), dump.chunks())

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
        raise _not_here("a restore into a server")

    async def check_target(self, params: Params) -> None:
        raise _not_here("a restore into a server")

    async def restore(self, archive: Path, params: Params, *, owner: str | None = None) -> dict[str, str]:
        raise _not_here("a restore into a server")

    async def release(self, params: Params, owner: str) -> None:
        return None

    async def drill(self, archive: Path, params: Params, *, owner: str) -> Fingerprint:
        raise _not_here("a restore drill")

    async def check_restore(self, files: PointFiles, params: Params, target: dict[str, Any]) -> None:
        raise _not_here("a restore into a server")

    async def restore_files(
        self, files: PointFiles, params: Params, target: dict[str, Any], *, owner: str
    ) -> dict[str, str]:
        raise _not_here("a restore into a server")


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

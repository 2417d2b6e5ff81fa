"""The PostgreSQL engine (the Engine port): validate a datasource, dump it, check an archive; the
restore side is ``restore.py``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import tempfile
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import Any

import psycopg

from dpvault.engines.base import Fingerprint, Params
from dpvault.engines.postgres import connstr, restore
from dpvault.engines.postgres import fingerprint as fp
from dpvault.engines.postgres.tools import Tools, require, stderr_detail, tool_env
from dpvault.errors import UserError
from dpvault.model.instances.schema import Datasource

CHUNK = 1 << 20


def connect_kwargs(params: Params, *, timeout: int, database: str | None = None) -> dict[str, Any]:
    """psycopg keyword arguments for a connection a secret describes. libpq would fill what the
    secret leaves out from dpvault's own environment (PGPASSWORD, ~/.pgpass, PGSERVICE...), which
    may hold the credentials of dpvault's state database: explicit values shut those out."""
    kwargs: dict[str, Any] = {k: v for k, v in params.items() if k != "connect_timeout"}
    if database is not None:
        kwargs["dbname"] = database
    kwargs.setdefault("password", "")
    kwargs["passfile"] = os.devnull
    kwargs["connect_timeout"] = int(params.get("connect_timeout") or timeout)
    kwargs["application_name"] = "dpvault"
    kwargs["autocommit"] = True
    return kwargs


def _connect_error(exc: Exception, params: Params) -> UserError:
    text = str(exc)
    lowered = text.lower()
    where = f"{params.get('host')}:{params.get('port', '5432')}"
    if (
        "password authentication failed" in lowered
        or "no password supplied" in lowered
        or "authentication failed" in lowered
    ):
        return UserError(
            "UserErrorDatabaseAuthenticationFailed",
            f"PostgreSQL at {where} rejected the credentials of user '{params.get('user', '')}'.",
            "Update the secret with the correct user and password.",
        )
    if "does not exist" in lowered and "database" in lowered:
        return UserError(
            "UserErrorDatabaseNotFound",
            f"The database '{params.get('dbname')}' does not exist on {where}.",
            "Check the database name in the connection string and in dataSourceInfo.",
        )
    unreachable = ("connection refused", "could not translate host name", "timeout expired", "no route to host",
                   "network is unreachable", "name or service not known", "could not connect")  # fmt: skip
    if any(s in lowered for s in unreachable):
        return UserError(
            "UserErrorDatabaseServerUnreachable",
            f"The PostgreSQL server {where} could not be reached.",
            "Check the server name and port, that the server is running, and that dpvault's host may connect to it.",
            retryable=True,
        )
    first_line = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return UserError(
        "UserErrorDatabaseConnectionFailed",
        f"Connecting to PostgreSQL at {where} failed: {first_line}",
        "Check the connection string stored in the secret.",
        retryable=True,
    )


class PostgresEngine:
    name = "postgresql"
    datasource_types = frozenset({"microsoft.dbforpostgresql/servers/databases"})  # "OssDB" is an alias of it
    archive_format = "pg_dump -Fc"
    stream_format = "pg_dump -Fc -Z0"

    def __init__(self, tools: Tools | None, *, connect_timeout: int = 10) -> None:
        self.tools = tools
        self.connect_timeout = connect_timeout

    @property
    def tool_version(self) -> str | None:
        return self.tools.version if self.tools else None

    def parse_secret(self, value: str) -> Params:
        return connstr.parse(value)

    async def connect(self, params: Params, database: str | None = None) -> psycopg.AsyncConnection[Any]:
        """A connection to what ``params`` describe (to ``database`` when given); UserError if none."""
        try:
            return await psycopg.AsyncConnection.connect(
                **connect_kwargs(params, timeout=self.connect_timeout, database=database)
            )
        except psycopg.Error as exc:
            raise _connect_error(
                exc, params if database is None else {**params, "dbname": database}
            ) from None

    async def validate(self, params: Params, datasource: Datasource) -> None:
        """Connect, check the database is the one named, that pg_dump can dump it, and that the user
        can read what a dump reads."""
        tools = require(self.tools)
        expected_database = datasource.resourceName
        conn = await self.connect(params)
        async with conn:
            row = await (
                await conn.execute("SELECT current_database(), current_setting('server_version_num')::int")
            ).fetchone()
            assert row is not None
            database, version_num = row
            if expected_database and expected_database.lower() != str(database).lower():
                raise UserError(
                    "UserErrorDatabaseMismatch",
                    f"The secret connects to database '{database}', but the backup instance protects '{expected_database}'.",
                    "Point the secret at the database named in dataSourceInfo, or fix dataSourceInfo.",
                )
            major = version_num // 10000 if version_num >= 100000 else version_num // 100
            version = f"{major}.{version_num % 10000 if version_num >= 100000 else version_num % 100}"
            if tools.major < major:
                raise UserError(
                    "UserErrorPgDumpVersionTooOld",
                    f"pg_dump {tools.version} cannot dump PostgreSQL {version}: pg_dump must be of the server's major version or newer.",
                    f"Install pg_dump {major} or newer where dpvault runs and pass serve --pg-dump PATH.",
                )
            denied = await (
                await conn.execute(
                    """
                    SELECT n.nspname || '.' || c.relname
                    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
                      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                      AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
                      AND (NOT has_schema_privilege(n.oid, 'USAGE') OR NOT has_table_privilege(c.oid, 'SELECT'))
                    ORDER BY 1 LIMIT 5
                    """
                )
            ).fetchall()
            if denied:
                names = ", ".join(r[0] for r in denied)
                raise UserError(
                    "UserErrorMissingDBPermissions",
                    f"The database user cannot read everything a backup reads (e.g. {names}).",
                    "Grant the backup user CONNECT on the database and USAGE and SELECT on all schemas, tables and sequences.",
                )

    @contextlib.asynccontextmanager
    async def dump(
        self, params: Params, *, fingerprint: bool = False, compress: bool = True
    ) -> AsyncIterator[_Dump]:
        """``pg_dump -Fc``; with ``fingerprint``, every table is counted and checksummed in the very
        snapshot pg_dump dumps (``pg_export_snapshot`` + ``--snapshot``)."""
        tools = require(self.tools)
        if not fingerprint:
            dump = _Dump(tools, params, None, None, compress=compress)
            try:
                yield dump
            finally:
                await dump.stop()
            return
        conn = await self.connect(params)
        async with conn:
            await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            snapshot = (await (await conn.execute("SELECT pg_export_snapshot()")).fetchone() or [""])[0]
            dump = _Dump(tools, params, snapshot, await fp.take(conn), compress=compress)
            try:
                yield dump  # the snapshot lives while this transaction is open
            finally:
                await dump.stop()
            await conn.execute("COMMIT")

    async def check(self, chunks: AsyncIterable[bytes]) -> dict[str, Any]:
        """``pg_restore --list`` over the streamed archive: it must read the table of contents.
        Returns {"tables": how many tables the archive holds}."""
        listing = await self.toc(chunks)
        tables = sum(1 for line in listing.splitlines() if re.search(r"\d+ TABLE (?!DATA )\S+ ", line))
        return {"tables": tables}

    async def toc(self, chunks: AsyncIterable[bytes]) -> str:
        """The archive's table of contents (``pg_restore --list``, consuming all of ``chunks``);
        UserError if it is not a valid archive."""
        tools = require(self.tools)
        proc = await asyncio.create_subprocess_exec(
            tools.pg_restore, "--list",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=tool_env({}),
        )  # fmt: skip
        assert proc.stdin is not None
        out_task = asyncio.ensure_future(_read_all(proc.stdout))
        err_task = asyncio.ensure_future(_read_all(proc.stderr))
        feeding = True
        try:
            async for chunk in chunks:
                if not feeding:
                    continue  # pg_restore has all it needs (the TOC); the rest is only consumed
                try:
                    proc.stdin.write(chunk)
                    await proc.stdin.drain()
                except (BrokenPipeError, ConnectionResetError):
                    feeding = False
            if feeding:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    proc.stdin.close()
                    await proc.stdin.wait_closed()
            out, err = await out_task, await err_task
            code = await proc.wait()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            out_task.cancel()
            err_task.cancel()
            raise
        if code != 0:
            raise UserError(
                "UserErrorBackupArchiveInvalid",
                f"The backup archive failed its check: {err.decode(errors='replace').strip()[:300]}",
                "Retry the backup; if it fails again, check the database for corruption.",
            )
        return out.decode(errors="replace")

    def restore_params(self, params: Params, target: Datasource) -> Params:
        name = target.resourceName or target.resourceID.rstrip("/").rsplit("/", 1)[-1]
        return {**params, "dbname": name}

    async def check_target(self, params: Params) -> None:
        await restore.check_target(self, params)

    async def restore(self, archive: Path, params: Params, *, owner: str | None = None) -> dict[str, str]:
        return await restore.to_database(self, archive, params, owner=owner)

    async def release(self, params: Params, owner: str) -> None:
        await restore.release(self, params, owner)

    async def drill(self, archive: Path, params: Params, *, owner: str) -> Fingerprint:
        return await restore.drill(self, archive, params, owner=owner)


async def _read_all(stream: asyncio.StreamReader | None) -> bytes:
    return await stream.read() if stream is not None else b""


class _Dump:
    """One ``pg_dump`` run: its stdout in CHUNK reads (a blocking pipe read by a thread: one event-loop
    hop per MiB, not per 64 KiB)."""

    def __init__(
        self,
        tools: Tools,
        params: Params,
        snapshot: str | None,
        prints: Fingerprint | None,
        *,
        compress: bool,
    ) -> None:
        self._tools = tools
        self._compress = compress
        self._params = params
        self._snapshot = snapshot
        self._prints = prints
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def fingerprint(self) -> Fingerprint | None:
        return self._prints

    async def chunks(self) -> AsyncIterator[bytes]:
        argv = [self._tools.pg_dump, "-Fc", "--no-password"]
        if not self._compress:
            argv.append("-Z0")
        if self._snapshot:
            argv.append(f"--snapshot={self._snapshot}")
        with tempfile.TemporaryFile() as stderr:
            # Fixed argv, no shell; the connection travels in the environment.
            proc = self._proc = subprocess.Popen(  # noqa: S603, ASYNC220
                argv, stdout=subprocess.PIPE, stderr=stderr, env=tool_env(self._params)
            )
            assert proc.stdout is not None
            read = proc.stdout.read
            while chunk := await asyncio.to_thread(read, CHUNK):
                yield chunk
            code = await asyncio.to_thread(proc.wait)
            self._proc = None
            if code != 0:
                stderr.seek(0)
                raise _dump_error(stderr.read().decode(errors="replace"), self._params)

    async def stop(self) -> None:
        """Whatever happened to the chunks' consumer, pg_dump is gone after this."""
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await asyncio.to_thread(proc.wait)


def _dump_error(stderr: str, params: Params) -> UserError:
    # the error line, not the "detail: Query was: ..." pg_dump writes after it
    said = [ln for ln in stderr.splitlines() if re.match(r"pg_dump(all)?: error: ", ln)]
    detail = stderr_detail(said[-1] if said else stderr, params, "pg_dump exited with an error")
    lowered = stderr.lower()
    if (
        "server closed the connection" in lowered
        or "terminating connection" in lowered
        or "connection to server was lost" in lowered
    ):
        return UserError(
            "UserErrorDatabaseConnectionLost",
            f"The database connection was lost during the backup: {detail}",
            "Check that the database server stays up during backups, then retry.",
            retryable=True,
        )
    if any(s in lowered for s in ("connection refused", "could not translate host name", "timeout expired")):
        return _connect_error(RuntimeError(stderr), params)
    if "password authentication failed" in lowered:
        return _connect_error(RuntimeError(stderr), params)
    return UserError(
        "UserErrorBackupFailed",
        f"pg_dump failed: {detail}",
        "Check the database server's log, then retry.",
        retryable=True,
    )

"""The PostgreSQL engine: validate a datasource, dump it into a datastore, check an archive.

pg_dump refuses servers of a newer major version than itself, so the tools are found (or
configured), their version is checked against the server's, and both versions are recorded.
Connection parameters reach pg_dump through ``PG*`` environment variables: the password never
appears on a command line, in a log or in a job.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from dpvault.datastores.local import CHUNK, Staged
from dpvault.protection import fingerprint as fp
from dpvault.protection.errors import UserError

_VERSION = re.compile(r"(\d+)(?:\.(\d+))?")


@dataclass(frozen=True)
class Tools:
    pg_dump: str
    pg_restore: str
    version: str
    major: int


def _version_of(binary: str) -> tuple[str, int]:
    # The binary is the operator's configured or found pg_dump, not request input.
    out = subprocess.run(  # noqa: S603
        [binary, "--version"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    match = _VERSION.search(out.split(")")[-1]) or _VERSION.search(out)
    if match is None:
        raise RuntimeError(f"cannot read the version of {binary}: {out!r}")
    return match.group(0), int(match.group(1))


def find_tools(pg_dump: str | None = None) -> Tools | None:
    """pg_dump/pg_restore: the configured path, else the newest Debian install, else PATH."""
    candidates: list[str] = []
    if pg_dump:
        candidates.append(pg_dump)
    candidates += [
        str(p / "pg_dump")
        for p in sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_major_of_dir, reverse=True)
    ]
    found = shutil.which("pg_dump")
    if found:
        candidates.append(found)
    for candidate in candidates:
        path = Path(candidate)
        restore = path.with_name("pg_restore")
        if path.is_file() and os.access(path, os.X_OK) and restore.is_file():
            version, major = _version_of(str(path))
            return Tools(str(path), str(restore), version, major)
    return None


def _major_of_dir(path: Path) -> int:
    try:
        return int(path.parent.name)
    except ValueError:
        return 0


@dataclass(frozen=True)
class ServerInfo:
    database: str
    version: str
    major: int


def connect_kwargs(params: dict[str, str], *, timeout: int, database: str | None = None) -> dict[str, Any]:
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


def _env(params: dict[str, str]) -> dict[str, str]:
    """The whole environment of pg_dump and pg_restore: the connection and little else, so
    nothing of dpvault's own (DPVAULT_SECRETS_KEY, cloud credentials, a PGPASSFILE) reaches them,
    and messages are in English (their stderr becomes user-facing errors)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "PGPASSFILE": os.devnull}
    if "TZ" in os.environ:
        env["TZ"] = os.environ["TZ"]
    names = {
        "host": "PGHOST",
        "hostaddr": "PGHOSTADDR",
        "port": "PGPORT",
        "dbname": "PGDATABASE",
        "user": "PGUSER",
        "password": "PGPASSWORD",
        "sslmode": "PGSSLMODE",
        "target_session_attrs": "PGTARGETSESSIONATTRS",
        "connect_timeout": "PGCONNECT_TIMEOUT",
    }
    for key, var in names.items():
        if params.get(key):
            env[var] = params[key]
    env.setdefault("PGCONNECT_TIMEOUT", "10")
    env["PGAPPNAME"] = "dpvault"
    return env


def _connect_error(exc: Exception, params: dict[str, str]) -> UserError:
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
    def __init__(self, tools: Tools | None, *, connect_timeout: int = 10) -> None:
        self.tools = tools
        self.connect_timeout = connect_timeout

    def _require_tools(self) -> Tools:
        if self.tools is None:
            raise UserError(
                "UserErrorPgDumpNotFound",
                "No pg_dump is installed where dpvault runs.",
                "Install the PostgreSQL client tools (apt-get install postgresql-client) or pass serve --pg-dump PATH.",
            )
        return self.tools

    async def connect(
        self, params: dict[str, str], database: str | None = None
    ) -> psycopg.AsyncConnection[Any]:
        """A connection to what ``params`` describe (to ``database`` when given); UserError if none."""
        try:
            return await psycopg.AsyncConnection.connect(
                **connect_kwargs(params, timeout=self.connect_timeout, database=database)
            )
        except psycopg.Error as exc:
            raise _connect_error(
                exc, params if database is None else {**params, "dbname": database}
            ) from None

    async def validate(self, params: dict[str, str], expected_database: str | None) -> ServerInfo:
        """Connect, check the database is the one named, that pg_dump can dump it, and that the user
        can read what a dump reads. Raises UserError with Azure-style codes."""
        tools = self._require_tools()
        conn = await self.connect(params)
        async with conn:
            row = await (
                await conn.execute(
                    "SELECT current_database(), current_setting('server_version_num')::int, version()"
                )
            ).fetchone()
            assert row is not None
            database, version_num, _ = row
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
            return ServerInfo(str(database), version, major)

    async def dump(
        self, params: dict[str, str], staged: Staged, *, fingerprint: bool = False
    ) -> dict[str, list[Any]] | None:
        """Stream ``pg_dump -Fc`` into ``staged``; with ``fingerprint``, also count and checksum every
        table in the very snapshot pg_dump dumps. Raises UserError if pg_dump fails."""
        if not fingerprint:
            await self._dump(params, staged, None)
            return None
        conn = await self.connect(params)
        async with conn:
            await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            snapshot = (await (await conn.execute("SELECT pg_export_snapshot()")).fetchone() or [""])[0]
            prints = await fp.take(conn)
            await self._dump(params, staged, snapshot)  # the snapshot lives while this transaction is open
            await conn.execute("COMMIT")
        return prints

    async def _dump(self, params: dict[str, str], staged: Staged, snapshot: str | None) -> None:
        tools = self._require_tools()
        argv = [tools.pg_dump, "-Fc", "--no-password"]
        if snapshot:
            argv.append(f"--snapshot={snapshot}")
        with tempfile.TemporaryFile() as stderr:
            # A blocking pipe, read by a thread (no event-loop hop per chunk): fixed argv, no shell.
            proc = subprocess.Popen(  # noqa: S603, ASYNC220
                argv,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=_env(params),
            )
            try:
                await asyncio.to_thread(_pump, proc, staged)
                code = await asyncio.to_thread(proc.wait)
            except BaseException:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await asyncio.to_thread(proc.wait)
                raise
            if code != 0:
                stderr.seek(0)
                raise _dump_error(stderr.read().decode(errors="replace"), params)

    async def archive_tables(self, path: Path) -> int:
        """Check an archive with ``pg_restore --list``; returns how many tables it holds."""
        tools = self._require_tools()
        proc = await asyncio.create_subprocess_exec(
            tools.pg_restore,
            "--list",
            str(path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=_env({}),
        )
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise UserError(
                "UserErrorBackupArchiveInvalid",
                f"The backup archive failed its check: {err.decode(errors='replace').strip()[:300]}",
                "Retry the backup; if it fails again, check the database for corruption.",
            )
        return sum(
            1
            for line in out.decode(errors="replace").splitlines()
            if re.search(r"\d+ TABLE (?!DATA )\S+ ", line)
        )


def _pump(proc: subprocess.Popen[bytes], staged: Staged) -> None:
    assert proc.stdout is not None
    read = proc.stdout.read
    while chunk := read(CHUNK):
        staged.write(chunk)


def stderr_detail(stderr: str, params: dict[str, str], fallback: str) -> str:
    """The last line a PostgreSQL tool wrote to stderr (what it failed on), password masked."""
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else fallback).replace(params.get("password") or "\0", "***")


def _dump_error(stderr: str, params: dict[str, str]) -> UserError:
    detail = stderr_detail(stderr, params, "pg_dump exited with an error")
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

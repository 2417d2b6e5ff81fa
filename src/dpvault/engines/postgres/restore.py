"""Restoring a PostgreSQL archive: into a database (``RestoreTargetInfo``) and, for drills, into a
scratch database on the source server.

A database target that already has user tables is refused (``FailIfExists``) and left untouched; a
missing one is created (and dropped again if the restore fails). A database this restore creates
carries a comment naming its job (the *owner*) until the job's completion is committed
(``release``): a re-run of the same job after a crash replaces its own half-restored database, and
never anyone else's. ``pg_restore`` reads the archive with ``--jobs`` in parallel.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Protocol

import psycopg
from psycopg import sql

from dpvault.engines.base import Fingerprint, Params
from dpvault.engines.postgres import fingerprint as fp
from dpvault.engines.postgres.tools import Tools, require, stderr_detail, tool_env
from dpvault.errors import UserError


class PostgresEngine(Protocol):
    """What restoring needs of the engine (``engine.PostgresEngine`` passes itself)."""

    tools: Tools | None

    async def connect(self, params: Params, database: str | None = None) -> psycopg.AsyncConnection[Any]: ...


def marker(owner: str) -> str:
    """The comment a restore job leaves on a database it created, until its completion commits."""
    return f"dpvault: being restored by job {owner}"


def _exists_error(name: str) -> UserError:
    return UserError(
        "UserErrorTargetDatabaseNotEmpty",
        f"The target database '{name}' already has tables and recoveryOption is FailIfExists; it was not changed.",
        "Restore into a new or empty database, or drop the existing one first.",
    )


async def _catalog_entry(engine: PostgresEngine, params: Params) -> tuple[bool, str | None]:
    """Whether the target database exists, and its comment."""
    conn = await engine.connect(params, "postgres")
    async with conn:
        row = await (
            await conn.execute(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                [params["dbname"]],
            )
        ).fetchone()
    return row is not None, (row[0] if row else None)


async def _database(engine: PostgresEngine, params: Params) -> tuple[str, str | None]:
    """("absent" | "empty" | "not-empty" (has user tables), its comment)."""
    exists, comment = await _catalog_entry(engine, params)
    if not exists:
        return "absent", None
    conn = await engine.connect(params, params["dbname"])
    async with conn:
        tables = await (await conn.execute(fp.TABLES)).fetchall()
    return ("not-empty" if tables else "empty"), comment


async def check_target(engine: PostgresEngine, params: Params) -> None:
    """What ``validateRestore`` checks, so a restore it passes does not then fail on rights: the
    target is absent or empty; for an absent one the user may create databases (CREATEDB); into an
    existing one it may connect and is its owner (or a superuser)."""
    state, _ = await _database(engine, params)
    if state == "not-empty":
        raise _exists_error(params["dbname"])
    user = params.get("user", "")
    if state == "absent":
        conn = await engine.connect(params, "postgres")
        async with conn:
            row = await (
                await conn.execute(
                    "SELECT rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = current_user"
                )
            ).fetchone()
        if not (row and row[0]):
            raise UserError(
                "UserErrorCannotCreateDatabase",
                f"The target database '{params['dbname']}' does not exist, and the restore user '{user}' may not "
                "create databases (it lacks CREATEDB).",
                "Create the database first and make the restore user its owner, or grant it CREATEDB "
                f"(ALTER ROLE {user or '<user>'} CREATEDB).",
            )
        return
    conn = await engine.connect(params, params["dbname"])  # CONNECT on it, or the connect error
    async with conn:
        row = await (
            await conn.execute(
                "SELECT r.rolsuper OR pg_has_role(d.datdba, 'USAGE') FROM pg_database d, pg_roles r "
                "WHERE d.datname = current_database() AND r.rolname = current_user"
            )
        ).fetchone()
    if not (row and row[0]):
        # pg_restore creates schemas, tables, sequences and comments as the archive holds them:
        # what a database's owner may do there, not what a grant of CREATE covers (COMMENT ON
        # SCHEMA public, extensions, ...).
        raise UserError(
            "UserErrorMissingDBPermissions",
            f"The restore user '{user}' does not own the target database '{params['dbname']}'; a restore into "
            "an existing database needs its owner (or a superuser).",
            f"Make the restore user the database's owner (ALTER DATABASE {params['dbname']} OWNER TO "
            f"{user or '<user>'}), or restore into a new database.",
        )


async def to_database(
    engine: PostgresEngine, archive: Path, params: Params, *, owner: str | None = None
) -> dict[str, str]:
    """Restore into ``params``' database, creating it when absent (see the module docstring)."""
    state, comment = await _database(engine, params)
    if state != "absent" and owner is not None and comment == marker(owner):
        await drop(engine, params)
        state = "absent"
    if state == "not-empty":
        raise _exists_error(params["dbname"])
    created = False
    if state == "absent":
        await _create(engine, params, owner)
        created = True
    try:
        await _pg_restore(engine, archive, params)
    except BaseException:
        if created:
            with contextlib.suppress(Exception):
                await drop(engine, params)
        raise
    return {"RestoredDatabase": params["dbname"], "CreatedDatabase": str(created).lower()}


async def release(engine: PostgresEngine, params: Params, owner: str) -> None:
    if (await _catalog_entry(engine, params))[1] == marker(owner):
        await _comment(engine, params, None)


async def _comment(engine: PostgresEngine, params: Params, text: str | None) -> None:
    conn = await engine.connect(params, "postgres")
    async with conn:
        name = sql.Identifier(params["dbname"])
        if text is None:
            await conn.execute(sql.SQL("COMMENT ON DATABASE {} IS NULL").format(name))
        else:
            await conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(name, sql.Literal(text)))


async def _create(engine: PostgresEngine, params: Params, owner: str | None) -> None:
    conn = await engine.connect(params, "postgres")
    async with conn:
        try:
            name = sql.Identifier(params["dbname"])
            await conn.execute(sql.SQL("CREATE DATABASE {}").format(name))
            if owner is not None:
                await conn.execute(
                    sql.SQL("COMMENT ON DATABASE {} IS {}").format(name, sql.Literal(marker(owner)))
                )
        except psycopg.Error as exc:
            raise UserError(
                "UserErrorCannotCreateDatabase",
                f"The target database '{params['dbname']}' does not exist and could not be created: "
                f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}",
                "Create the database first, or give the restore user the CREATEDB privilege.",
            ) from None


async def drop(engine: PostgresEngine, params: Params) -> None:
    conn = await engine.connect(params, "postgres")
    async with conn:
        await conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(params["dbname"]))
        )


async def _pg_restore(
    engine: PostgresEngine,
    archive: Path,
    params: Params,
    *,
    owners: bool = False,
    privileges: bool = False,
    tablespaces: bool = True,
    single_transaction: bool = False,
) -> None:
    """pg_restore into ``params``' database: owners and privileges left out unless asked (a
    database restored on its own has none of its roles around), in parallel unless it must be one
    transaction (a restore into an existing database, undone whole if it fails)."""
    tools = require(engine.tools)
    jobs = max(1, min(4, os.cpu_count() or 1))
    env = tool_env({k: v for k, v in params.items() if k != "dbname"})
    target = psycopg.conninfo.make_conninfo(dbname=params["dbname"])
    flags = ["--exit-on-error", "--single-transaction" if single_transaction else f"--jobs={jobs}"]
    flags += [] if owners else ["--no-owner"]
    flags += [] if privileges else ["--no-privileges"]
    flags += [] if tablespaces else ["--no-tablespaces"]
    with tempfile.TemporaryFile() as stderr:
        proc = await asyncio.create_subprocess_exec(
            tools.pg_restore, *flags, f"--dbname={target}", str(archive),
            stdout=asyncio.subprocess.DEVNULL, stderr=stderr, env=env,
        )  # fmt: skip
        try:
            code = await proc.wait()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            raise
        if code != 0:
            stderr.seek(0)
            detail = stderr_detail(
                _error_lines(stderr.read().decode(errors="replace")), params, "pg_restore failed"
            )
            raise UserError(
                "UserErrorRestoreFailed",
                f"pg_restore failed: {detail}",
                "Check the target server's log, then retry.",
            )


def _error_lines(stderr: str) -> str:
    """What pg_restore failed on: its (last) error line and the server's DETAIL/HINT after it, not
    the "Command was: ..." text of the statement."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [i for i, ln in enumerate(lines) if ln.startswith("pg_restore: error:")]
    if not errors:
        return stderr
    at = errors[-1]
    said = [lines[at].removeprefix("pg_restore: error: ")]
    for ln in lines[at + 1 :]:
        if not ln.startswith(("DETAIL:", "HINT:")):
            break
        said.append(ln)
    return " ".join(said)


async def drill(engine: PostgresEngine, archive: Path, params: Params, *, owner: str) -> Fingerprint:
    """Restore into ``dpvault_drill_<owner>`` on the source server, fingerprint it, drop it."""
    scratch: dict[str, Any] = {
        **params,
        "dbname": f"dpvault_drill_{re.sub('[^0-9a-f]', '', owner.lower())[:32]}",
    }
    try:
        await drop(engine, scratch)
        await to_database(engine, archive, scratch)
        conn = await engine.connect(scratch, scratch["dbname"])
        async with conn:
            return await fp.take(conn)
    finally:
        with contextlib.suppress(Exception):
            await drop(engine, scratch)

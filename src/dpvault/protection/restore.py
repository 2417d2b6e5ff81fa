"""Restore: a recovery point into a PostgreSQL database (``RestoreTargetInfo``) or as files
(``RestoreFilesTargetInfo``), and restore drills that prove a point restores.

Order, always: the recovery point's bytes are re-hashed and must match the SHA-256 recorded at
backup time *before* anything is written to the target. A database target that already has user
tables is refused (``FailIfExists``) and left untouched; a missing one is created (and dropped
again if the restore fails). ``pg_restore`` reads the archive with ``--jobs`` in parallel.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import msgspec
import psycopg
import structlog
from psycopg import sql

from dpvault.datastores.local import CHUNK, fsync_dir
from dpvault.protection import fingerprint as fp
from dpvault.protection.errors import UserError
from dpvault.protection.postgres import _env, stderr_detail
from dpvault.protection.service import Protection
from dpvault.resources.instances.schema import BackupInstance, SecretStoreBasedAuthCredentials
from dpvault.store import RecoveryPointRow

log = structlog.get_logger("dpvault.restore")

_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def corrupted(rp_id: str) -> UserError:
    return UserError(
        "UserErrorRecoveryPointCorrupted",
        f"The data of recovery point '{rp_id}' does not match the SHA-256 recorded when it was taken; "
        "nothing was written to the target.",
        "Restore another recovery point; run `dpvault verify` to check the others.",
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


def _marker(owner: str) -> str:
    return f"dpvault: being restored by job {owner}"


class Restorer:
    def __init__(self, protection: Protection, roots: list[Path]) -> None:
        self.protection = protection
        self.roots = roots
        for root in roots:
            root.mkdir(parents=True, exist_ok=True, mode=0o700)

    @property
    def datastore(self):  # type: ignore[no-untyped-def]
        return self.protection.datastore

    # -- checks ------------------------------------------------------------------------------

    async def verify(self, rp: RecoveryPointRow) -> None:
        """The point's object must exist and hash to what was recorded."""
        try:
            size, sha = await asyncio.to_thread(self.datastore.hash, rp.object_key)
        except FileNotFoundError:
            raise corrupted(rp.id) from None
        if (size, sha) != (rp.size, rp.sha256):
            raise corrupted(rp.id)

    async def target_params(
        self, source: BackupInstance, target: dict[str, Any], subscription: str
    ) -> dict[str, str]:
        """Connection parameters for a database target: its own credentials, else the instance's,
        with the database the target names."""
        creds = target.get("datasourceAuthCredentials")
        bi = source
        if creds:
            bi = msgspec.structs.replace(
                source, datasourceAuthCredentials=msgspec.convert(creds, SecretStoreBasedAuthCredentials)
            )
        params = dict(await self.protection.connection(bi, subscription))
        name = (
            target["datasourceInfo"].get("resourceName")
            or target["datasourceInfo"]["resourceID"].rstrip("/").rsplit("/", 1)[-1]
        )
        params["dbname"] = name
        return params

    async def _connect(self, params: dict[str, str], database: str) -> psycopg.AsyncConnection[Any]:
        return await self.protection.engine.connect(params, database)

    async def database_state(self, params: dict[str, str]) -> str:
        """ "absent", "empty" or "not-empty" (has user tables), for FailIfExists."""
        return (await self._database(params))[0]

    async def _database(self, params: dict[str, str]) -> tuple[str, str | None]:
        """The target database's state (``database_state``) and its comment (a restore job's mark)."""
        exists, comment = await self._catalog_entry(params)
        if not exists:
            return "absent", None
        conn = await self._connect(params, params["dbname"])
        async with conn:
            tables = await (await conn.execute(fp.TABLES)).fetchall()
        return ("not-empty" if tables else "empty"), comment

    def _exists_error(self, name: str) -> UserError:
        return UserError(
            "UserErrorTargetDatabaseNotEmpty",
            f"The target database '{name}' already has tables and recoveryOption is FailIfExists; it was not changed.",
            "Restore into a new or empty database, or drop the existing one first.",
        )

    async def validate(
        self, source: BackupInstance, rp: RecoveryPointRow, target: dict[str, Any], subscription: str
    ) -> None:
        """What a restore would check before writing: the point's bytes, then the target."""
        await self.verify(rp)
        if target["objectType"] == "RestoreFilesTargetInfo":
            details = target["targetDetails"]
            directory = target_directory(details["url"], self.roots)
            prefix = check_prefix(details["filePrefix"])
            if (directory / f"{prefix}.dump").exists():
                raise UserError(
                    "UserErrorTargetFileExists",
                    f"'{prefix}.dump' already exists in the target directory and recoveryOption is FailIfExists.",
                    "Choose another filePrefix or remove the existing file.",
                )
            return
        params = await self.target_params(source, target, subscription)
        if await self.database_state(params) == "not-empty":
            raise self._exists_error(params["dbname"])

    # -- restores ----------------------------------------------------------------------------

    async def to_files(self, rp: RecoveryPointRow, target: dict[str, Any], owner: str) -> dict[str, str]:
        """Copy the point to ``<prefix>.dump`` and ``<prefix>.dump.sha256``, never overwriting either.

        ``owner`` (the restore job's id) names the staging file, which stays linked to the result
        until the job's completion is committed (then ``release_files``): a re-run of the same job
        after a crash finishes its own work instead of reporting its own file as someone else's."""
        details = target["targetDetails"]
        directory = target_directory(details["url"], self.roots)
        prefix = check_prefix(details["filePrefix"])
        await self.verify(rp)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        final = directory / f"{prefix}.dump"
        sidecar = directory / f"{prefix}.dump.sha256"
        tmp = directory / f".{prefix}.dump.{owner}.partial"

        def ours() -> bool:
            with contextlib.suppress(OSError):
                return os.path.samefile(tmp, final)
            return False

        def exists_error() -> UserError:
            return UserError("UserErrorTargetFileExists", f"'{final.name}' already exists in the target directory.",
                             "Choose another filePrefix.")  # fmt: skip

        def copy() -> str:
            if not ours():
                if final.exists() or sidecar.is_symlink() or sidecar.exists():
                    raise exists_error()
                tmp.unlink(missing_ok=True)  # an earlier attempt of this job that did not finish
                digest = hashlib.sha256()
                with self.datastore.open(rp.object_key) as src, open(tmp, "xb") as dst:
                    while chunk := src.read(CHUNK):
                        digest.update(chunk)
                        dst.write(chunk)
                    dst.flush()
                    os.fsync(dst.fileno())
                if digest.hexdigest() != rp.sha256:
                    tmp.unlink(missing_ok=True)
                    raise corrupted(rp.id)
                try:
                    os.link(tmp, final)  # fails if the name appeared meanwhile: never overwrite
                except FileExistsError:
                    tmp.unlink(missing_ok=True)
                    raise exists_error() from None
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

        path = await asyncio.to_thread(copy)
        return {"RestoredFile": path, "SHA256": rp.sha256}

    async def to_database(
        self,
        rp: RecoveryPointRow,
        params: dict[str, str],
        *,
        owner: str | None = None,
        verified: bool = False,
    ) -> dict[str, str]:
        """Restore into ``params``' database, creating it when absent. A database this restore
        creates carries a comment naming ``owner`` (the restore job) until the job's completion is
        committed (then ``release_database``), so a re-run of the same job after a crash replaces its
        own half-restored database, and never anyone else's. ``verified``: the caller just checked
        the point's bytes."""
        if not verified:
            await self.verify(rp)
        state, comment = await self._database(params)
        if state != "absent" and owner is not None and comment == _marker(owner):
            await self.drop(params)
            state = "absent"
        if state == "not-empty":
            raise self._exists_error(params["dbname"])
        created = False
        if state == "absent":
            await self._create(params, owner)
            created = True
        try:
            await self._pg_restore(rp, params)
        except BaseException:
            if created:
                with contextlib.suppress(Exception):
                    await self.drop(params)
            raise
        return {"RestoredDatabase": params["dbname"], "CreatedDatabase": str(created).lower()}

    async def release_database(self, params: dict[str, str], owner: str) -> None:
        """After the job's completion is committed: the database is the user's now."""
        if (await self._catalog_entry(params))[1] == _marker(owner):
            await self._comment(params, None)

    def release_files(self, target: dict[str, Any], owner: str) -> None:
        """After the job's completion is committed: drop the staging link that marked the files ours."""
        details = target["targetDetails"]
        directory = target_directory(details["url"], self.roots)
        prefix = check_prefix(details["filePrefix"])
        (directory / f".{prefix}.dump.{owner}.partial").unlink(missing_ok=True)

    async def _catalog_entry(self, params: dict[str, str]) -> tuple[bool, str | None]:
        """Whether the target database exists, and its comment."""
        conn = await self._connect(params, "postgres")
        async with conn:
            row = await (
                await conn.execute(
                    "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                    [params["dbname"]],
                )
            ).fetchone()
        return row is not None, (row[0] if row else None)

    async def _comment(self, params: dict[str, str], text: str | None) -> None:
        conn = await self._connect(params, "postgres")
        async with conn:
            name = sql.Identifier(params["dbname"])
            if text is None:
                await conn.execute(sql.SQL("COMMENT ON DATABASE {} IS NULL").format(name))
            else:
                await conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(name, sql.Literal(text)))

    async def _create(self, params: dict[str, str], owner: str | None) -> None:
        conn = await self._connect(params, "postgres")
        async with conn:
            try:
                name = sql.Identifier(params["dbname"])
                await conn.execute(sql.SQL("CREATE DATABASE {}").format(name))
                if owner is not None:
                    await conn.execute(
                        sql.SQL("COMMENT ON DATABASE {} IS {}").format(name, sql.Literal(_marker(owner)))
                    )
            except psycopg.Error as exc:
                raise UserError(
                    "UserErrorCannotCreateDatabase",
                    f"The target database '{params['dbname']}' does not exist and could not be created: "
                    f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}",
                    "Create the database first, or give the restore user the CREATEDB privilege.",
                ) from None

    async def drop(self, params: dict[str, str]) -> None:
        conn = await self._connect(params, "postgres")
        async with conn:
            await conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(params["dbname"]))
            )

    async def _pg_restore(self, rp: RecoveryPointRow, params: dict[str, str]) -> None:
        tools = self.protection.engine._require_tools()
        jobs = max(1, min(4, os.cpu_count() or 1))
        env = _env({k: v for k, v in params.items() if k != "dbname"})
        target = psycopg.conninfo.make_conninfo(dbname=params["dbname"])
        with tempfile.TemporaryFile() as stderr:
            proc = await asyncio.create_subprocess_exec(
                tools.pg_restore, "--no-owner", "--no-privileges", "--exit-on-error", f"--jobs={jobs}",
                f"--dbname={target}", str(self.datastore.path(rp.object_key)),
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
                detail = stderr_detail(stderr.read().decode(errors="replace"), params, "pg_restore failed")
                raise UserError(
                    "UserErrorRestoreFailed",
                    f"pg_restore failed: {detail}",
                    "Check the target server's log, then retry.",
                )

    # -- drills ------------------------------------------------------------------------------

    async def drill(
        self, source: BackupInstance, rp: RecoveryPointRow, subscription: str, owner: str
    ) -> dict[str, Any]:
        """Restore into a scratch database on the source server, compare fingerprints, drop it.
        The scratch name comes from the drill's job id: a re-run after a crash replaces its own."""
        expected = msgspec.json.decode(rp.details).get("fingerprint")
        await self.verify(rp)
        params = dict(await self.protection.connection(source, subscription))
        params["dbname"] = f"dpvault_drill_{re.sub('[^0-9a-f]', '', owner.lower())[:32]}"
        try:
            await self.drop(params)
            await self.to_database(rp, params, verified=True)
            conn = await self._connect(params, params["dbname"])
            async with conn:
                actual = await fp.take(conn)
        finally:
            with contextlib.suppress(Exception):
                await self.drop(params)
        if expected is None:
            return {"tables": len(actual), "rows": sum(v[0] for v in actual.values()), "compared": False}
        diffs = fp.differences(expected, actual)
        if diffs:
            raise UserError(
                "UserErrorRestoreDrillMismatch",
                f"The restore drill of recovery point '{rp.id}' does not match the backup: {'; '.join(diffs[:5])}",
                "Take a new backup and check the database and the vault store.",
            )
        return {"tables": len(actual), "rows": sum(v[0] for v in actual.values()), "compared": True}

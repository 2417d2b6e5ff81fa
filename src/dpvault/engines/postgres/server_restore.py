"""Restoring a whole-server recovery point into a PostgreSQL server (beyond Azure, which restores
such points only as files): the globals' roles, then each database, in one request.

What is restored (``select``):

- ``RestoreTargetInfo``: every database of the point, under its own name.
- ``ItemLevelRestoreTargetInfo`` with ``restoreCriteria`` of ``ItemPathBasedRestoreCriteria``: the
  databases whose names the items' ``itemPath`` give (``crm``, ``/crm``, or the database's ARM id
  ``.../flexibleServers/<server>/databases/crm``); ``renameTo`` restores one under another name.
  ``subItemPathPrefix`` and other criteria are refused (a database is restored whole).

The target server is ``restoreTargetInfo.datasourceInfo.resourceID``'s source mapping. Before
anything is written, everything is checked (``plan``), and a restore that would fail on any
database fails as a whole:

- ``FailIfExists``: a database of the selection that exists in the target with tables is refused
  (all such databases named in one error). One that exists without tables (a new server's
  ``postgres``) is restored into, in one transaction, if the restore user owns it; one whose archive
  holds nothing (an unused ``postgres``) is left as it is.
- The restore user needs ``CREATEDB`` for the databases it creates and ``CREATEROLE`` for the roles;
  a user that is not a superuser cannot recreate roles with SUPERUSER, REPLICATION or BYPASSRLS, nor
  grant privileges on parameters: such roles must exist in the target already.

Roles (``globals.sql``): a role the target does not have is created with its attributes, settings,
comment and memberships; **a role that exists is left as it is** (not altered: its attributes,
settings and memberships stay the target's). Role passwords are not in the point (``pg_dumpall
--no-role-passwords``, like Azure's): set them after the restore. Tablespaces are not recreated and
tables go to the default tablespace (``pg_restore --no-tablespaces``; flexible servers have none).

Databases are created ``TEMPLATE template0`` and restored with ``pg_restore --jobs``; privileges
(GRANTs) are restored, and so are owners when the restore user is a superuser (otherwise the
restore user owns every object: ``--no-owner``). The databases are owned by the restore user;
database-level settings, comments and grants, which ``pg_dump`` keeps only with ``--create``, are not
in the point.

Crash safety and cleanup, as for a single database (``restore.py``): every database and role this
restore creates carries a comment naming its job (the *owner*) until the job's completion is
committed (``release``); a role's own comment is kept behind the mark and put back then. A re-run
of the same job drops its own half-restored databases and takes its own roles as its own; a restore
that fails drops the databases and roles it created (``undo``) and leaves everything else as it was.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import psycopg
from psycopg import sql

from dpvault.engines.base import Params, PointFiles
from dpvault.engines.postgres import fingerprint as fp
from dpvault.engines.postgres import restore
from dpvault.engines.postgres.globals_sql import GlobalsError, Statement, quote_ident, statements
from dpvault.engines.postgres.layout import GLOBALS, database_of, file_name
from dpvault.errors import UserError

# Attributes a new role has already; a restore user that is not a superuser may not even name them.
_DEFAULT_ATTRIBUTES = {"NOSUPERUSER", "NOREPLICATION", "NOBYPASSRLS"}
_SUPERUSER_ATTRIBUTES = ("SUPERUSER", "REPLICATION", "BYPASSRLS")
_MAX_GLOBALS = 64 << 20


class Engine(Protocol):
    """What this needs of the single-database engine (``engine.PostgresEngine``)."""

    tools: Any

    async def connect(self, params: Params, database: str | None = None) -> psycopg.AsyncConnection[Any]: ...

    async def toc(self, chunks: AsyncIterator[bytes]) -> str: ...


@dataclass(frozen=True, slots=True)
class Item:
    source: str  # the database of the point
    target: str  # the database it is restored into
    file: str  # the point's file
    mode: str  # "create" | "into-empty" (an existing database without tables) | "skip" (nothing in it)


@dataclass
class Plan:
    items: list[Item]
    superuser: bool
    statements: list[Statement]
    create_roles: list[str]  # roles this restore creates (in the globals' order)
    own_roles: list[str]  # roles an earlier run of this job created (marked): this restore's own
    existing_roles: list[str]  # roles of the point the target has: left as they are
    own_databases: list[str] = field(default_factory=list)  # an earlier run's, dropped first


def marker(owner: str) -> str:
    return restore.marker(owner)


def _bad(message: str) -> UserError:
    return UserError(
        "UserErrorInvalidRestoreCriteria",
        message,
        "Name databases of the recovery point in restoreCriteria: ItemPathBasedRestoreCriteria items whose "
        "itemPath is a database name, with renameTo to restore one under another name.",
    )


def _database_of_path(item_path: str) -> str:
    path = item_path.strip()
    lowered = path.lower()
    if "/databases/" in lowered:
        return path[lowered.rindex("/databases/") + len("/databases/") :].strip("/")
    return path[1:] if path.startswith("/") else path


def _check_database_name(name: str, what: str) -> str:
    if not name or "\0" in name or len(name.encode()) > 63:
        raise _bad(f"{what} '{name[:100]}' is not a PostgreSQL database name (1-63 bytes).")
    return name


def check_shape(target: dict[str, Any]) -> list[tuple[str, str]]:
    """What a request's criteria must be whatever the point holds (said at the request, 400):
    (database of the point, database restored into) for each item, in order, without repeats."""
    if target.get("objectType") != "ItemLevelRestoreTargetInfo":
        return []
    criteria = target.get("restoreCriteria")
    if not isinstance(criteria, list) or not criteria:
        raise _bad("ItemLevelRestoreTargetInfo needs at least one restoreCriteria item.")
    chosen: dict[str, str] = {}  # target -> source
    for item in criteria:
        kind = item.get("objectType") if isinstance(item, dict) else type(item).__name__
        if not isinstance(item, dict) or kind != "ItemPathBasedRestoreCriteria":
            raise _bad(
                f"restoreCriteria objectType '{str(kind)[:60]}' is not one a flexible server restore takes: "
                "use ItemPathBasedRestoreCriteria with a database name as itemPath."
            )
        if item.get("subItemPathPrefix"):
            raise _bad("subItemPathPrefix is not supported for databases: a database is restored whole.")
        source = _check_database_name(_database_of_path(str(item.get("itemPath") or "")), "itemPath")
        rename = item.get("renameTo")
        name = _check_database_name(str(rename), "renameTo") if rename else source
        if chosen.get(name, source) != source:
            raise _bad(f"Two restoreCriteria items restore into the same database '{name[:100]}'.")
        chosen[name] = source
    return [(source, name) for name, source in chosen.items()]


def select(target: dict[str, Any], databases: list[str]) -> list[tuple[str, str]]:
    """(database of the point, database restored into) for each database the request restores
    (see the module docstring); UserError for criteria the point does not answer."""
    if target.get("objectType") != "ItemLevelRestoreTargetInfo":
        return [(d, d) for d in databases]
    chosen = check_shape(target)
    for source, _ in chosen:
        if source not in databases:
            raise UserError(
                "UserErrorRestoreItemNotFound",
                f"The recovery point holds no database '{source[:100]}'; it holds: {', '.join(databases)}.",
                "Name a database of the recovery point in itemPath.",
            )
    return chosen


def _exists_error(names: list[str]) -> UserError:
    listed = ", ".join(f"'{n}'" for n in names)
    return UserError(
        "UserErrorTargetDatabaseNotEmpty",
        f"The target server already has the database(s) {listed} with tables, and recoveryOption is "
        "FailIfExists; nothing was changed.",
        "Drop or rename those databases in the target, or restore them under other names "
        "(ItemLevelRestoreTargetInfo with ItemPathBasedRestoreCriteria and renameTo).",
    )


def _denied(message: str, action: str) -> UserError:
    return UserError("UserErrorMissingDBPermissions", message, action)


def _is_own(comment: str | None, owner: str | None) -> bool:
    if owner is None or comment is None:
        return False
    mark = marker(owner)
    return comment == mark or comment.startswith(mark + "\n")


async def read_globals(files: PointFiles) -> list[Statement]:
    if GLOBALS not in files.names:
        raise UserError(
            "UserErrorRecoveryPointCorrupted",
            "The recovery point holds no globals.sql: it is not a whole-server point.",
            "Restore another recovery point.",
        )
    data = bytearray()
    async for chunk in files.read(GLOBALS):
        data += chunk
        if len(data) > _MAX_GLOBALS:
            raise UserError(
                "UserErrorRestoreFailed",
                "The point's globals.sql is larger than 64 MiB; it is not restored into a server.",
                "Restore as files (RestoreFilesTargetInfo) and apply the globals with psql.",
            )
    try:
        return statements(data.decode())
    except (GlobalsError, UnicodeDecodeError) as exc:
        raise UserError(
            "UserErrorRestoreFailed",
            f"The point's globals.sql cannot be read as SQL ({exc}).",
            "Restore as files (RestoreFilesTargetInfo) and apply the globals with psql.",
        ) from None


async def plan(
    engine: Engine, files: PointFiles, params: Params, target: dict[str, Any], owner: str | None
) -> Plan:
    """Everything the restore will do, checked against the target before anything is written."""
    databases = [database_of(n) for n in files.names if n.endswith(".dump")]
    chosen = select(target, databases)
    script = await read_globals(files)
    conn = await engine.connect(params)
    async with conn:
        me = await (
            await conn.execute(
                "SELECT rolname, rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = current_user"
            )
        ).fetchone()
        assert me is not None
        user, superuser, createdb, createrole = str(me[0]), bool(me[1]), bool(me[2]), bool(me[3])
        roles = {
            str(r[0]): r[1]
            for r in await (
                await conn.execute("SELECT rolname, shobj_description(oid, 'pg_authid') FROM pg_roles")
            ).fetchall()
        }
        present = {
            str(r[0]): r[1]
            for r in await (
                await conn.execute("SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database")
            ).fetchall()
        }
    items: list[Item] = []
    own_databases: list[str] = []
    occupied: list[str] = []
    for source, name in chosen:
        file = file_name(source)
        if name not in present or _is_own(present[name], owner):
            if name in present:
                own_databases.append(name)
            items.append(Item(source, name, file, "create"))
            continue
        if not _has_entries(await engine.toc(files.read(file))):
            items.append(Item(source, name, file, "skip"))
            continue
        if await _existing(engine, params, name, user) == "not-empty":
            occupied.append(name)
            continue
        items.append(Item(source, name, file, "into-empty"))
    if occupied:
        raise _exists_error(occupied)
    if any(i.mode == "create" for i in items) and not (superuser or createdb):
        raise _denied(
            f"The restore user '{user}' may not create databases (it lacks CREATEDB).",
            f"Grant it CREATEDB (ALTER ROLE {user} CREATEDB), or restore as a superuser.",
        )
    create_roles: list[str] = []
    own_roles: list[str] = []
    existing_roles: list[str] = []
    for st in script:
        if st.kind != "create-role" or st.role is None:
            continue
        if st.role not in roles:
            create_roles.append(st.role)
        elif _is_own(roles[st.role], owner):
            own_roles.append(st.role)
        else:
            existing_roles.append(st.role)
    ours = set(create_roles) | set(own_roles)
    if create_roles and not (superuser or createrole):
        raise _denied(
            f"The restore user '{user}' may not create roles (it lacks CREATEROLE); the target lacks the "
            f"point's roles {_names(create_roles)}.",
            f"Grant it CREATEROLE (ALTER ROLE {user} CREATEROLE), create those roles first, or restore as a "
            "superuser.",
        )
    if not superuser:
        needs: list[str] = []
        for st in script:
            if st.role not in ours:
                continue
            if st.kind == "alter-role" and (held := [a for a in _SUPERUSER_ATTRIBUTES if a in st.words()]):
                needs.append(f"role '{st.role}' has {', '.join(held)}")
            elif st.kind == "grant":
                needs.append(f"role '{st.role}' is granted privileges on parameters")
        if needs:
            raise _denied(
                f"The restore user '{user}' is not a superuser and cannot recreate what the point's globals say: "
                f"{'; '.join(needs[:5])}.",
                "Create those roles in the target first (existing roles are left as they are), or restore as a "
                "superuser.",
            )
    return Plan(items, superuser, script, create_roles, own_roles, existing_roles, own_databases)


def _names(names: list[str]) -> str:
    shown = ", ".join(f"'{n}'" for n in names[:10])
    return shown + (f" and {len(names) - 10} more" if len(names) > 10 else "")


def _has_entries(listing: str) -> bool:
    """Whether a table of contents lists anything to restore (not only its header)."""
    return any(line.strip() and not line.startswith(";") for line in listing.splitlines())


async def _existing(engine: Engine, params: Params, name: str, user: str) -> str:
    """ "not-empty" (it has tables), or "empty" when the restore user may restore into it (its
    owner, or a superuser); UserError otherwise."""
    conn = await engine.connect(params, name)  # CONNECT on it, or the connect error
    async with conn:
        if await (await conn.execute(fp.TABLES)).fetchall():
            return "not-empty"
        row = await (
            await conn.execute(
                "SELECT r.rolsuper OR pg_has_role(d.datdba, 'USAGE') FROM pg_database d, pg_roles r "
                "WHERE d.datname = current_database() AND r.rolname = current_user"
            )
        ).fetchone()
    if not (row and row[0]):
        raise _denied(
            f"The target database '{name}' exists without tables, and the restore user '{user}' does not own it; "
            "a restore into an existing database needs its owner (or a superuser).",
            f"Make the restore user its owner (ALTER DATABASE {quote_ident(name)} OWNER TO {user}), drop it, or "
            "restore it under another name (renameTo).",
        )
    return "empty"


async def check(engine: Engine, files: PointFiles, params: Params, target: dict[str, Any]) -> None:
    """``validateRestore``: what ``run`` would refuse, without writing."""
    await plan(engine, files, params, target, None)


async def run(
    engine: Engine, files: PointFiles, params: Params, target: dict[str, Any], *, owner: str
) -> dict[str, str]:
    """Restore the selection into the target server (see the module docstring). On any failure,
    what this job created (in this run or an earlier one) is dropped again."""
    made = _Made()
    try:
        steps = await plan(engine, files, params, target, owner)
        for name in steps.own_databases:  # an earlier run of this job left it half-restored
            await restore.drop(engine, {**params, "dbname": name})
        await _apply_roles(engine, params, steps, owner, made)
        # new databases first: an existing one restored into cannot be taken back once committed
        ordered = [i for i in steps.items if i.mode == "create"] + [
            i for i in steps.items if i.mode == "into-empty"
        ]
        for item in ordered:
            into = {**params, "dbname": item.target}
            try:
                async with files.local_copy(item.file) as archive:
                    if item.mode == "create":
                        await _create_database(engine, params, item.target, owner, made)
                    await restore._pg_restore(
                        engine, archive, into, owners=steps.superuser, privileges=True, tablespaces=False,
                        single_transaction=item.mode == "into-empty",
                    )  # fmt: skip
            except UserError as exc:
                raise UserError(
                    exc.code, f"Database '{item.target}': {exc.message}", exc.recommended_action,
                    retryable=exc.retryable, user_error=exc.user_error,
                ) from None  # fmt: skip
    except BaseException:
        with contextlib.suppress(Exception):
            await undo(engine, params, owner, made)
        raise
    restored = [i.target for i in steps.items if i.mode != "skip"]
    details = {
        "RestoredDatabases": ",".join(restored),
        "CreatedDatabases": ",".join(i.target for i in steps.items if i.mode == "create"),
        "CreatedRoles": ",".join([*steps.own_roles, *steps.create_roles]),
        "ExistingRoles": ",".join(steps.existing_roles),
    }
    skipped = [i.target for i in steps.items if i.mode == "skip"]
    if skipped:
        details["UnchangedDatabases"] = ",".join(skipped)  # they exist, and their archives hold nothing
    renamed = [f"{i.source}->{i.target}" for i in steps.items if i.source != i.target]
    if renamed:
        details["RenamedDatabases"] = ",".join(renamed)
    return {k: v for k, v in details.items() if v}


@dataclass
class _Made:
    """What this run created, known before its mark is on it (a failure between the two)."""

    databases: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)


async def _create_database(engine: Engine, params: Params, name: str, owner: str, made: _Made) -> None:
    """CREATE DATABASE from template0 (nothing of the target's template1 in it), marked as the job's."""
    conn = await engine.connect(params)
    async with conn:
        ident = sql.Identifier(name)
        try:
            await conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(ident))
        except psycopg.Error as exc:
            raise UserError(
                "UserErrorCannotCreateDatabase",
                f"The database could not be created: {_first_line(exc)}",
                "Give the restore user the CREATEDB privilege, or restore as a superuser.",
            ) from None
        made.databases.append(name)
        await conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(ident, sql.Literal(marker(owner))))


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


async def _apply_roles(engine: Engine, params: Params, steps: Plan, owner: str, made: _Made) -> None:
    """The globals' statements for this restore's own roles, each marked as the job's at once."""
    ours = set(steps.create_roles) | set(steps.own_roles)
    comments = {st.role: st.comment for st in steps.statements if st.kind == "comment-role" and st.role}
    conn = await engine.connect(params)
    async with conn:
        for st in steps.statements:
            if st.kind == "set":
                text = st.text
            elif st.role not in ours:
                continue
            elif st.kind == "create-role":
                if st.role in steps.own_roles:
                    continue  # created by an earlier run of this job
                text = st.text
            elif st.kind == "alter-role":
                if "DATABASE" in st.words() and " IN DATABASE " in st.text.upper():
                    continue  # per-database settings: pg_dumpall --globals-only writes none (pg_dump does)
                text = st.text if steps.superuser else st.without(_DEFAULT_ATTRIBUTES)
                if text.upper().endswith(" WITH"):
                    continue
            elif st.kind == "grant-role":
                text = st.before("GRANTED")  # granted by the restore user, whoever granted it at the source
            elif st.kind == "grant":
                text = st.text
            else:
                continue  # its comment is kept behind the mark; tablespaces and the rest are not restored
            try:
                await conn.execute(text.encode())
                if st.kind == "create-role":
                    made.roles.append(st.role)
                    mark = marker(owner) + ("\n" + comments[st.role] if comments.get(st.role) else "")
                    await conn.execute(
                        sql.SQL("COMMENT ON ROLE {} IS {}").format(sql.Identifier(st.role), sql.Literal(mark))
                    )
            except psycopg.Error as exc:
                raise UserError(
                    "UserErrorRestoreFailed",
                    f"Recreating the point's roles failed at '{_head(text)}': {_first_line(exc)}",
                    "Create the role in the target first (existing roles are left as they are), or restore as a "
                    "superuser.",
                ) from None


def _head(text: str) -> str:
    one = re.sub(r"\s+", " ", text).strip()
    return one if len(one) <= 120 else one[:117] + "..."


async def undo(engine: Engine, params: Params, owner: str, made: _Made | None = None) -> None:
    """What a failed restore leaves: every database and role marked as ``owner``'s (or that this run
    created, ``made``) is dropped; databases first (roles own their objects)."""
    databases, roles = await _marked(engine, params, owner)
    if made is not None:
        databases = list(dict.fromkeys([*made.databases, *databases]))
        roles = {**{r: "" for r in made.roles}, **roles}
    for name in databases:
        with contextlib.suppress(Exception):
            await restore.drop(engine, {**params, "dbname": name})
    if roles:
        conn = await engine.connect(params)
        async with conn:
            for name in roles:
                with contextlib.suppress(psycopg.Error):
                    await conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


async def release(engine: Engine, params: Params, owner: str) -> None:
    """After the job's completion is committed: the marks go (a role's own comment comes back)."""
    databases, roles = await _marked(engine, params, owner)
    if not databases and not roles:
        return
    mark = marker(owner)
    conn = await engine.connect(params)
    async with conn:
        for name in databases:
            await conn.execute(sql.SQL("COMMENT ON DATABASE {} IS NULL").format(sql.Identifier(name)))
        for name, comment in roles.items():
            original = comment[len(mark) + 1 :] if comment.startswith(mark + "\n") else None
            await conn.execute(
                sql.SQL("COMMENT ON ROLE {} IS {}").format(
                    sql.Identifier(name), sql.Literal(original) if original else sql.SQL("NULL")
                )
            )


async def _marked(engine: Engine, params: Params, owner: str) -> tuple[list[str], dict[str, str]]:
    conn = await engine.connect(params)
    async with conn:
        databases = await (
            await conn.execute("SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database")
        ).fetchall()
        roles = await (
            await conn.execute("SELECT rolname, shobj_description(oid, 'pg_authid') FROM pg_roles")
        ).fetchall()
    return (
        [str(d) for d, comment in databases if _is_own(comment, owner)],
        {str(r): str(comment) for r, comment in roles if _is_own(comment, owner)},
    )

"""The flexible server engine in process, against a real PostgreSQL server: dumps taken ahead of
their turn (private spools, nothing left when a backup stops midway, a failure ahead named), and
the pure parts of a restore into a server (the globals' statements, the restore criteria)."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dpvault.engines.postgres import find_tools
from dpvault.engines.postgres.flexible import FlexibleServerEngine
from dpvault.engines.postgres.globals_sql import statements
from dpvault.engines.postgres.server_restore import select
from dpvault.errors import UserError
from tests.support import PostgresServer

NAMES = ("alpha", "bravo", "charlie", "delta")


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    root = Path(tempfile.mkdtemp(prefix="dpvault-flexengine-"))
    server = PostgresServer(root)
    server.start()
    try:
        for name in NAMES:
            server.sql("postgres", f"CREATE DATABASE {name}")
            server.sql(name, "CREATE TABLE t (id int PRIMARY KEY, a text, b text)")
            server.sql(
                name,
                "INSERT INTO t SELECT g, md5(g::text), repeat(md5(g::text), 4) FROM generate_series(1, 60000) g",
            )
        server.sql("postgres", "CREATE ROLE limited LOGIN PASSWORD 'limited-pw'")
        for name in NAMES:
            server.sql(name, "GRANT SELECT ON t TO limited")
        server.sql("charlie", "CREATE TABLE hidden (x int)")  # limited cannot read it
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def params(pg: PostgresServer, user: str = "postgres", password: str | None = None) -> dict[str, str]:
    return {"host": "127.0.0.1", "port": str(pg.port), "user": user, "password": password or pg.password,
            "dbname": "postgres"}  # fmt: skip


def pg_dumps() -> list[int]:
    """This process's pg_dump children still alive."""
    found = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except FileNotFoundError:  # that thread has just ended
            continue
        for child in children:
            try:
                if Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")[0].endswith(b"pg_dump"):
                    state = Path(f"/proc/{child}/stat").read_text().split(") ", 1)[1][0]
                    if state != "Z":
                        found.append(int(child))
            except FileNotFoundError:
                continue
    return found


async def _consume(engine: FlexibleServerEngine, p: dict[str, str]) -> dict[str, int]:
    sizes: dict[str, int] = {}
    async for item in engine.dump_files(p, {}):
        assert item.chunks is not None
        sizes[item.name] = 0
        async for chunk in item.chunks:
            sizes[item.name] += len(chunk)
    return sizes


def test_dumps_ahead_are_the_same_archives_as_dumps_in_turn(
    pg: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = FlexibleServerEngine(find_tools(), tmp_dir=tmp_path / "spool")
    monkeypatch.setenv("DPVAULT_PG_DUMP_JOBS", "1")
    in_turn = asyncio.run(_consume(engine, params(pg)))
    monkeypatch.setenv("DPVAULT_PG_DUMP_JOBS", "3")
    ahead = asyncio.run(_consume(engine, params(pg)))
    assert list(ahead) == ["globals.sql", *(f"{n}.dump" for n in NAMES), "postgres.dump"]
    # -Z0 archives of the same data have the same length (only the header's timestamp differs)
    assert ahead == in_turn
    assert all(ahead[f"{n}.dump"] > 4_000_000 for n in NAMES)
    assert list((tmp_path / "spool").iterdir()) == [] and pg_dumps() == []


def test_spools_are_private_unnamed_files_and_go_when_a_backup_stops_midway(
    pg: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DPVAULT_PG_DUMP_JOBS", "3")
    spool_dir = tmp_path / "spool"
    engine = FlexibleServerEngine(find_tools(), tmp_dir=spool_dir)

    async def run() -> list[tuple[str, int]]:
        files = engine.dump_files(params(pg), {})
        seen: list[tuple[str, int]] = []
        first = await anext(files)
        assert first.name == "globals.sql" and first.chunks is not None
        async for _ in first.chunks:
            pass
        current = await anext(files)
        assert current.name == "alpha.dump" and current.chunks is not None
        await anext(current.chunks)  # alpha streams; bravo and charlie are being dumped ahead
        for pid in pg_dumps():
            try:
                target = os.readlink(f"/proc/{pid}/fd/1")
                if "dpvault-spool-" in target:
                    seen.append((target, stat.S_IMODE(os.stat(f"/proc/{pid}/fd/1").st_mode)))
            except FileNotFoundError:  # that dump ahead has just finished
                continue
        await files.aclose()  # the backup stops midway (a failure elsewhere, a cancelled job)
        return seen

    seen = asyncio.run(run())
    # bravo and charlie are dumped ahead; one may be done already when the test looks
    assert len(seen) <= 2, seen
    for target, mode in seen:
        assert target.startswith(str(spool_dir)) and target.endswith("(deleted)"), target
        assert mode == 0o600
    assert pg_dumps() == []
    assert list(spool_dir.iterdir()) == []


def test_a_database_that_cannot_be_dumped_ahead_fails_the_backup_naming_it(
    pg: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DPVAULT_PG_DUMP_JOBS", "2")
    engine = FlexibleServerEngine(find_tools(), tmp_dir=tmp_path / "spool")
    with pytest.raises(UserError) as failed:
        asyncio.run(_consume(engine, params(pg, "limited", "limited-pw")))
    assert failed.value.code == "UserErrorBackupFailed"
    assert failed.value.message.startswith("Database 'charlie': pg_dump failed: ")
    assert "permission denied for table hidden" in failed.value.message
    assert "limited-pw" not in failed.value.message
    assert pg_dumps() == [] and list((tmp_path / "spool").iterdir()) == []


# -- pure parts of a restore into a server ---------------------------------------------------------


def test_globals_statements_are_split_and_named_as_pg_dumpall_writes_them(pg: PostgresServer) -> None:
    pg.sql("postgres", '''CREATE ROLE "odd; ""name""" NOLOGIN''')
    pg.sql("postgres", "COMMENT ON ROLE limited IS 'it''s; on\ntwo lines'")
    pg.sql("postgres", '''GRANT "odd; ""name""" TO limited''')
    pg.sql("postgres", "ALTER ROLE limited SET work_mem TO '8MB'")
    pg.sql("postgres", "GRANT SET ON PARAMETER work_mem TO limited")
    tools = find_tools()
    assert tools is not None
    script = subprocess.run(
        [str(Path(tools.pg_dump).with_name("pg_dumpall")), "--globals-only", "--no-role-passwords",
         "-h", str(pg.root), "-p", str(pg.port), "-U", "postgres"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    found = statements(script)
    assert not [s for s in found if s.text.startswith("\\")]  # psql meta-commands are not statements
    kinds = {(s.kind, s.role) for s in found}
    assert {("create-role", "limited"), ("create-role", 'odd; "name"'), ("create-role", "postgres"),
            ("alter-role", "limited"), ("comment-role", "limited"), ("grant-role", "limited"),
            ("grant", "limited")} <= kinds  # fmt: skip
    (comment,) = [s for s in found if s.kind == "comment-role"]
    assert comment.comment == "it's; on\ntwo lines"
    (member,) = [s for s in found if s.kind == "grant-role"]
    assert member.before("GRANTED") == '''GRANT "odd; ""name""" TO limited'''
    (attributes,) = [
        s for s in found if s.kind == "alter-role" and s.role == "limited" and "WITH" in s.words()
    ]
    stripped = attributes.without({"NOSUPERUSER", "NOREPLICATION", "NOBYPASSRLS"})
    assert stripped == "ALTER ROLE limited WITH INHERIT NOCREATEROLE NOCREATEDB LOGIN", stripped


def test_restore_criteria_select_databases_by_name_path_or_arm_id() -> None:
    point = ["crm", "inventory", "postgres", "shop"]
    assert select({"objectType": "RestoreTargetInfo"}, point) == [(d, d) for d in point]
    server = "/subscriptions/s/resourceGroups/g/providers/Microsoft.DBforPostgreSQL/flexibleServers/pg1"
    target = {"objectType": "ItemLevelRestoreTargetInfo", "restoreCriteria": [
        {"objectType": "ItemPathBasedRestoreCriteria", "itemPath": "shop"},
        {"objectType": "ItemPathBasedRestoreCriteria", "itemPath": "/crm", "renameTo": "crm_old"},
        {"objectType": "ItemPathBasedRestoreCriteria", "itemPath": f"{server}/Databases/inventory"},
        {"objectType": "ItemPathBasedRestoreCriteria", "itemPath": "shop"},
    ]}  # fmt: skip
    assert select(target, point) == [("shop", "shop"), ("crm", "crm_old"), ("inventory", "inventory")]
    refused = {
        "UserErrorRestoreItemNotFound": [{"objectType": "ItemPathBasedRestoreCriteria", "itemPath": "billing"}],
        "UserErrorInvalidRestoreCriteria": [{"objectType": "RangeBasedItemLevelRestoreCriteria",
                                             "minMatchingValue": "a", "maxMatchingValue": "z"}],
    }  # fmt: skip
    for code, criteria in refused.items():
        with pytest.raises(UserError) as failed:
            select({"objectType": "ItemLevelRestoreTargetInfo", "restoreCriteria": criteria}, point)
        assert failed.value.code == code
    for criteria in (
        [],
        [{"objectType": "ItemPathBasedRestoreCriteria", "itemPath": "crm", "subItemPathPrefix": ["x"]}],
        [{"objectType": "ItemPathBasedRestoreCriteria", "itemPath": "crm", "renameTo": "x" * 64}],
        [{"objectType": "ItemPathBasedRestoreCriteria", "itemPath": "crm", "renameTo": "both"},
         {"objectType": "ItemPathBasedRestoreCriteria", "itemPath": "shop", "renameTo": "both"}],
    ):  # fmt: skip
        with pytest.raises(UserError) as failed:
            select({"objectType": "ItemLevelRestoreTargetInfo", "restoreCriteria": criteria}, point)
        assert failed.value.code == "UserErrorInvalidRestoreCriteria", criteria

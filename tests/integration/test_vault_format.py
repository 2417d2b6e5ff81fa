"""Vault format 2 through the real server and a real PostgreSQL database, and the format readers
check: chunks stored once (a second backup writes only what changed), nothing readable in the
store, a backup killed while writing leaves nothing after the sweep, format-1 points from before
still restore and verify, and an unknown format is refused (docs/design/vault-format.md)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from dpvault.arm import ids
from dpvault.engines.postgres import find_tools
from dpvault.vault import format as vault_format
from tests.integration.test_protection import Protected, make_sample_database, vault_files
from tests.integration.test_restore import (
    database_exists,
    finish,
    protected,
    restore,
    restore_request,
    table_state,
    target_info,
)
from tests.support import PostgresServer, Server
from tests.vaultfiles import object_keys, pack_keys, read_point, vault_root

__all__ = ["protected"]  # the fixture, shared with test_restore


def _verify(server: Server, instance: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        sys.executable,
        "-m",
        "dpvault",
        "verify",
        "--data-dir",
        str(server.data_dir),
        "--instance",
        instance,
    ]
    if server.database_url:
        cmd += ["--database-url", server.database_url]
    if "--vault-store" in server.args:
        cmd += ["--vault-store", server.vault_store]
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **server.environ})


def test_an_unknown_vault_format_is_refused_by_restore_and_reported_by_verify(
    server: Server, protected: Protected, source_pg: PostgresServer
) -> None:
    p = protected
    assert p.wait_job(p.backup())["status"] == "Completed"
    (rp,) = p.points()
    manifest = next(f for f in vault_files(server) if f.name == f"{rp['name']}.manifest")
    body = json.loads(manifest.read_text())
    assert body["format"] == 2 and set(body) == {"format", "keyId", "sealed"}  # what backups write today
    assert _verify(server, p.name).returncode == 0

    manifest.write_text(json.dumps({**body, "format": 99}))
    target = f"never_{uuid.uuid4().hex[:8]}"
    op, _ = finish(p, restore(p, restore_request(rp["name"], target_info(p, target)), validate=True))
    assert op["status"] == "Failed" and op["error"]["code"] == "UserErrorRecoveryPointFormatUnsupported"
    _, final = finish(p, restore(p, restore_request(rp["name"], target_info(p, target))))
    job = p.wait_job(final.json()["jobId"])
    assert job["status"] == "Failed"
    assert job["errorDetails"][0]["code"] == "UserErrorRecoveryPointFormatUnsupported"
    assert not database_exists(source_pg, target)
    out = _verify(server, p.name)
    assert out.returncode == 1 and "unsupported vault format 99" in out.stdout
    assert "1 recovery points checked: 0 ok, 1 bad" in out.stdout

    manifest.unlink()
    out = _verify(server, p.name)
    assert out.returncode == 1 and "the manifest is missing" in out.stdout


def _job_bytes(job: dict[str, object]) -> tuple[int, int]:
    details = job["extendedInfo"]["additionalDetails"]  # type: ignore[index]
    return int(details["StoredBytes"]), int(details["DeduplicatedBytes"])  # type: ignore[index]


def test_a_second_backup_after_a_small_change_stores_only_the_changed_chunks(
    server: Server, client: httpx.Client, source_pg: PostgresServer
) -> None:
    db = make_sample_database(source_pg, customers=60000, orders=200000)  # ~15 MB dumped: a dozen chunks
    source_pg.sql(
        db,
        "CREATE TABLE notes (id int PRIMARY KEY, body text); INSERT INTO notes VALUES (1, 'first');"
        "CREATE TABLE logs AS SELECT g AS id, md5(g::text) || md5((g * 3)::text) AS line FROM generate_series(1, 150000) g",
    )
    p = Protected(server, client, source_pg, db).create()
    assert p.put()["status"] == "Succeeded"
    first = p.wait_job(p.backup())
    assert first["status"] == "Completed"
    stored1, reused1 = _job_bytes(first)
    assert stored1 > 0 and reused1 == 0
    source_pg.sql(db, "UPDATE notes SET body = 'second' WHERE id = 1")
    second = p.wait_job(p.backup())
    assert second["status"] == "Completed"
    stored2, reused2 = _job_bytes(second)
    size2 = int(second["extendedInfo"]["dataTransferredInBytes"])
    assert reused2 > 0.75 * size2, (stored2, reused2, size2)  # what did not change was not written again
    assert stored2 < 0.2 * stored1, (stored1, stored2)
    new, old = p.points()  # newest first
    assert read_point(server, new["name"]) != read_point(server, old["name"])  # both whole, and different


def test_no_plaintext_reaches_the_vault_store(
    server: Server, client: httpx.Client, source_pg: PostgresServer
) -> None:
    marker = f"dpvault-marker-{uuid.uuid4().hex}"
    db = make_sample_database(source_pg, customers=500, orders=500)
    source_pg.sql(db, f"CREATE TABLE secrets (v text); INSERT INTO secrets VALUES ('{marker}')")
    p = Protected(server, client, source_pg, db).create()
    assert p.put()["status"] == "Succeeded"
    assert p.wait_job(p.backup())["status"] == "Completed"
    (rp,) = p.points()
    assert marker.encode() in read_point(server, rp["name"])  # it is in the backup...
    everything = [f.read_bytes() for f in vault_root(server).rglob("*") if f.is_file()]
    assert everything and not any(
        marker.encode() in blob for blob in everything
    )  # ...and nowhere in the store
    assert not any(b"CREATE TABLE" in blob for blob in everything)


def test_a_format_1_point_from_before_format_2_restores_and_verifies(
    server: Server, client: httpx.Client, source_pg: PostgresServer, tmp_path: Path
) -> None:
    """A point laid down exactly as format 1 wrote them (``<rp>.dump`` as pg_dump -Fc wrote it, its
    JSON manifest, its row): restore (into a database and as files) and verify still read it."""
    db = make_sample_database(source_pg, customers=40, orders=70)
    p = Protected(server, client, source_pg, db).create()
    assert p.put()["status"] == "Succeeded"
    tools = find_tools()
    assert tools is not None
    archive = subprocess.run(
        [tools.pg_dump, "-Fc", "-h", "127.0.0.1", "-p", str(source_pg.port), "-U", "postgres", db],
        capture_output=True, check=True, env={"PATH": os.environ["PATH"], "PGPASSWORD": source_pg.password},
    ).stdout  # fmt: skip
    instance_key = ids.key(p.env.instance_path(p.name))
    vault_key = ids.key(p.env.vault_path)
    rp_id = str(uuid.uuid4())
    key = vault_format.archive_key(vault_key, instance_key, rp_id)
    sha = hashlib.sha256(archive).hexdigest()
    (vault_root(server) / key).parent.mkdir(parents=True, exist_ok=True)
    (vault_root(server) / key).write_bytes(archive)
    manifest = {"format": 1, "recoveryPointId": rp_id, "instance": instance_key, "sha256": sha, "size": len(archive),
                "engine": "pg_dump -Fc", "pgDumpVersion": tools.version, "tables": 2}  # fmt: skip
    (vault_root(server) / vault_format.manifest_key(key)).write_text(json.dumps(manifest))
    _insert_point(server, {
        "id": rp_id, "instance_key": instance_key, "vault_key": vault_key, "time": time.time() - 86400, "tag": "Default",
        "rule_name": "BackupDaily", "policy_name": p.env.policy, "policy_version": "1.0", "data_store": "VaultStore",
        "object_key": key, "size": len(archive), "sha256": sha, "expiry": None,
        "details": json.dumps({"tables": 2, "objectKey": key}).encode(), "state": "available", "created_at": time.time(),
    })  # fmt: skip
    (rp,) = p.points()
    assert rp["name"] == rp_id
    assert _verify(server, p.name).returncode == 0
    target = f"from_f1_{uuid.uuid4().hex[:8]}"
    _, final = finish(p, restore(p, restore_request(rp_id, target_info(p, target))))
    assert p.wait_job(final.json()["jobId"])["status"] == "Completed"
    assert table_state(source_pg, target) == table_state(source_pg, db)
    (vault_root(server) / key).write_bytes(archive[:-1] + bytes([archive[-1] ^ 1]))
    out = _verify(server, p.name)
    assert out.returncode == 1 and "corrupt: SHA-256 differs" in out.stdout


@pytest.mark.parametrize("store", ["local", "azure", "s3"])
def test_a_backup_killed_while_writing_leaves_nothing_after_the_sweep(
    store: str,
    make_server: Callable[..., Server],
    vault_store_args: Callable[..., tuple[list[str], dict[str, str]]],
    source_pg: PostgresServer,
) -> None:
    args, environ = vault_store_args(store)
    server = make_server("--lease-seconds", "2", *args, environ=environ)
    db = make_sample_database(source_pg, customers=10, orders=10)
    source_pg.sql(  # ~60 MB that neither compresses nor dedupes: the dump takes a while
        db,
        "CREATE TABLE blobs AS SELECT g AS id, (SELECT decode(string_agg(md5(g::text || '.' || i::text), ''), 'hex') "
        "FROM generate_series(1, 64) i) AS b FROM generate_series(1, 60000) g",
    )
    with server.client() as client:
        p = Protected(server, client, source_pg, db).create()
        assert p.put()["status"] == "Succeeded"
        job_id = p.backup()
        # let pg_dump run in short bursts until a pack is written, then hold it: the backup is
        # certainly in the middle of writing when the server is killed
        dump = _wait_for_pg_dump(server)
        deadline = time.monotonic() + 60
        while not pack_keys(server, p.env.vault_path):
            assert time.monotonic() < deadline, "the backup never wrote a pack"
            os.kill(dump, signal.SIGCONT)
            time.sleep(0.05)
            os.kill(dump, signal.SIGSTOP)
            time.sleep(0.3)
        assert p.job(job_id)["status"] == "InProgress"
    server.kill()
    # the job's re-run (after the lease) cannot reach the database: it fails for good, and with it
    # every trace of the point goes -- what the killed attempt wrote included
    server.set_secret(p.uri, source_pg.ado(db, password="not-the-password"))
    server.start()
    with server.client() as client:
        p.client = p.env.client = client
        job = p.wait_job(job_id)
        assert (
            job["status"] == "Failed"
            and job["errorDetails"][0]["code"] == "UserErrorDatabaseAuthenticationFailed"
        )
        assert p.points() == []  # nothing visible of the killed attempt
    server.stop()
    server.start()  # the first sweep after a start collects what the dead writer left
    deadline = time.monotonic() + 60
    while pack_keys(server, p.env.vault_path) or _writing(server):
        assert time.monotonic() < deadline, (pack_keys(server, p.env.vault_path), _writing(server))
        time.sleep(0.2)
    left = object_keys(server, vault_format.vault_prefix(ids.key(p.env.vault_path)))
    assert [key for key in left if "/keys/" not in key] == []  # the vault's wrapped data key stays
    if store == "local":
        assert [f for f in vault_root(server).rglob("*.partial")] == []
    server.set_secret(p.uri, source_pg.ado(db))
    with server.client() as client:  # and the next backup works
        p.client = p.env.client = client
        assert p.wait_job(p.backup())["status"] == "Completed"
        assert len(p.points()) == 1


def _wait_for_pg_dump(server: Server, timeout: float = 60) -> int:
    """The pid of the server's pg_dump child, stopped (SIGSTOP) as soon as it is seen."""
    assert server.proc is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            comm = stat[stat.index("(") + 1 : stat.rindex(")")]
            pgid = int(stat[stat.rindex(")") + 2 :].split()[2])
            if comm == "pg_dump" and pgid == server.proc.pid:
                os.kill(int(entry.name), signal.SIGSTOP)
                return int(entry.name)
        time.sleep(0.01)
    raise AssertionError("pg_dump never started")


def _sql(server: Server, statement: str, params: dict[str, object] | None = None) -> list[tuple[object, ...]]:
    from sqlalchemy import create_engine, text

    from dpvault.store.engines import sync_url

    engine = create_engine(sync_url(server.database_url or f"sqlite:///{server.data_dir / 'state.db'}"))
    try:
        with engine.begin() as conn:
            result = conn.execute(text(statement), params or {})
            return [tuple(r) for r in result.all()] if result.returns_rows else []
    finally:
        engine.dispose()


def _insert_point(server: Server, row: dict[str, object]) -> None:
    columns = ", ".join(row)
    _sql(server, f"INSERT INTO recovery_points ({columns}) VALUES ({', '.join(':' + c for c in row)})", row)


def _writing(server: Server) -> list[tuple[object, ...]]:
    return _sql(server, "SELECT id FROM recovery_points WHERE state = 'writing'")

"""The vault store running out of space, or refusing writes, is a first-class failure (issue 15):

- a backup into a full store fails at once (no retries: they cannot help) with
  ``UserErrorVaultStoreFull`` -- the service's fault, not the user's -- naming the store, leaving
  nothing staged, and the next backup succeeds once space is back;
- a resource-group delete while the store refuses deletes still answers 200 (the group is gone) and a
  durable job finishes deleting its backup data once the store accepts deletes again.

The store is a small tmpfs the test mounts (root only; skipped with the reason elsewhere)."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.test_protection import Protected, make_sample_database
from tests.support import PostgresServer, Server


def _mount(path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *options, str(path)], capture_output=True, text=True)


@pytest.fixture
def small_store() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    path = Path(tempfile.mkdtemp(prefix="dpvault-small-store-"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"this machine forbids mounts: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)
        path.rmdir()


def _random_table(pg: PostgresServer, db: str, rows: int) -> None:
    """Rows that neither compress nor dedupe (~1 KB each)."""
    pg.sql(db, "CREATE TABLE blobs AS SELECT g AS id, (SELECT decode(string_agg(md5(g::text || '.' || i::text), ''), 'hex') "
               f"FROM generate_series(1, 64) i) AS b FROM generate_series(1, {rows}) g")  # fmt: skip


def test_a_full_vault_store_fails_the_backup_at_once_and_the_next_one_works_once_space_is_back(
    make_server: Callable[..., Server], source_pg: PostgresServer, small_store: Path
) -> None:
    server = make_server("--vault-store", str(small_store))
    db = make_sample_database(source_pg, customers=10, orders=10)
    _random_table(source_pg, db, 6000)  # ~6 MB: more than the store holds
    with server.client() as client:
        p = Protected(server, client, source_pg, db).create()
        assert p.put()["status"] == "Succeeded"
        started = time.monotonic()
        job = p.wait_job(p.backup(), timeout=60)
        assert job["status"] == "Failed", job
        error = job["errorDetails"][0]
        assert error["code"] == "UserErrorVaultStoreFull"
        assert error["isUserError"] is False and str(small_store) in error["message"]
        assert (
            str(small_store) not in error["recommendedAction"][0]
            or "vault store" in error["recommendedAction"][0]
        )
        assert time.monotonic() - started < 20  # failed at once, not after five attempts
        assert p.points() == []
        assert list((small_store / ".staging").iterdir()) == []  # nothing half-written left
        assert _mount(small_store, "-o", "remount,size=64m").returncode == 0  # space is back
        job = p.wait_job(p.backup(), timeout=60)
        assert job["status"] == "Completed", job
        assert len(p.points()) == 1


def test_a_resource_group_deleted_while_the_store_refuses_deletes_is_cleaned_up_by_its_job(
    make_server: Callable[..., Server], source_pg: PostgresServer, small_store: Path
) -> None:
    assert _mount(small_store, "-o", "remount,size=64m").returncode == 0
    server = make_server("--vault-store", str(small_store))
    db = make_sample_database(source_pg, customers=50, orders=50)
    with server.client() as client:
        p = Protected(server, client, source_pg, db).create()
        assert p.put()["status"] == "Succeeded"
        assert p.wait_job(p.backup())["status"] == "Completed"
        objects = [f for f in small_store.rglob("*") if f.is_file()]
        assert objects
        assert _mount(small_store, "-o", "remount,ro").returncode == 0
        try:
            r = client.delete(
                f"/subscriptions/{p.env.vault_path.split('/')[2]}/resourceGroups/{p.env.rg}?api-version=2021-04-01"
            )
            assert r.status_code == 200, r.text  # the group is gone; its data follows when it can
            assert all(f.exists() for f in objects)
            time.sleep(2)
        finally:
            assert _mount(small_store, "-o", "remount,rw").returncode == 0
        deadline = time.monotonic() + 90
        while [f for f in small_store.rglob("*") if f.is_file()]:
            assert time.monotonic() < deadline, [str(f) for f in small_store.rglob("*") if f.is_file()]
            time.sleep(0.5)

"""Scale-out on PostgreSQL: two API processes and two `dpvault worker`s share one database.

Every operation runs exactly once (each job claimed once, attempts == 1), nothing is lost, and a
worker killed mid-job has its job re-claimed after the lease and completed by the other. Backups
from two workers dedupe against each other in one vault, on a shared directory and on an object
store with a data dir per machine (no NFS)."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text

from dpvault.store.engines import sync_url
from tests.support import API, Env, PostgresServer, Server, instance_body, wait_operation

INSTANCES = 1000


def start_worker(
    data_dir: Path, database_url: str, *extra: str, environ: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    data_dir.mkdir(parents=True, exist_ok=True)
    log = open(data_dir / f"worker-{uuid.uuid4().hex[:6]}.log", "ab")
    cmd = [sys.executable, "-m", "dpvault", "worker", "--data-dir", str(data_dir), "--database-url", database_url,
           "--lease-seconds", "3", *extra]  # fmt: skip
    return subprocess.Popen(
        cmd,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, **(environ or {})},
    )


def jobs(database_url: str) -> list[dict[str, Any]]:
    engine = create_engine(sync_url(database_url))
    with engine.connect() as conn:
        rows = [
            dict(r._mapping) for r in conn.execute(text("SELECT kind, payload, state, attempts FROM jobs"))
        ]
    engine.dispose()
    for row in rows:
        row["payload"] = msgspec.json.decode(bytes(row["payload"]))
    return rows


@pytest.fixture
def cluster(tmp_path: Path, source_pg: PostgresServer) -> Any:
    url = source_pg.create_database()
    data_dir = tmp_path / "shared"
    first = Server(data_dir, database_url=url, args=["--no-background"]).start()
    second = Server(data_dir, database_url=url, args=["--no-background"]).start()
    workers = [start_worker(data_dir, url), start_worker(data_dir, url)]
    yield url, data_dir, (first, second), workers
    for worker in workers:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(10)
    first.stop()
    second.stop()


def test_two_api_processes_and_two_workers_run_every_operation_exactly_once(cluster: Any) -> None:
    url, _data_dir, servers, _workers = cluster
    clients = [s.client() for s in servers]
    env = Env(clients[0]).create()
    names = [f"bi-{i:04d}" for i in range(INSTANCES)]

    def put(i: int) -> str:
        client = clients[i % 2]  # alternate between the two API processes
        r = client.put(f"{env.instance_path(names[i])}?api-version={API}", json=instance_body(env.policy_id))
        assert r.status_code == 201, r.text
        return r.headers["Azure-AsyncOperation"]

    with ThreadPoolExecutor(16) as pool:
        status_urls = list(pool.map(put, range(INSTANCES)))
    for i, url_ in enumerate(status_urls):
        op = wait_operation(clients[(i + 1) % 2], url_, timeout=120)  # ask the other process
        assert op["status"] == "Succeeded", op

    listed: list[str] = []
    next_url: str | None = f"{env.vault_path}/backupInstances?api-version={API}"
    while next_url:
        page = clients[1].get(next_url).json()
        listed += [v["name"] for v in page["value"]]
        next_url = page.get("nextLink")
    assert sorted(listed) == names  # nothing lost, nothing doubled
    for name in names[:: INSTANCES // 20]:
        props = clients[0].get(f"{env.instance_path(name)}?api-version={API}").json()["properties"]
        assert (
            props["provisioningState"] == "Succeeded"
            and props["currentProtectionState"] == "ProtectionConfigured"
        )

    configure = [j for j in jobs(url) if j["kind"] == "instance.configure"]
    per_operation: dict[str, int] = {}
    for job in configure:
        per_operation[job["payload"]["operation"]] = per_operation.get(job["payload"]["operation"], 0) + 1
    assert len(configure) == INSTANCES
    assert set(per_operation.values()) == {1}  # no duplicate jobs
    assert {j["state"] for j in configure} == {"done"}
    assert {j["attempts"] for j in configure} == {1}  # each ran exactly once
    for c in clients:
        c.close()


def test_a_killed_workers_job_is_reclaimed_after_its_lease(cluster: Any) -> None:
    url, data_dir, servers, workers = cluster
    for worker in workers:  # start over with one slow worker
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(10)
    workers[:] = [start_worker(data_dir, url, "--provisioning-delay", "4")]
    time.sleep(1.5)
    with servers[0].client() as client:
        env = Env(client).create()
        r = client.put(f"{env.instance_path('slow')}?api-version={API}", json=instance_body(env.policy_id))
        assert r.status_code == 201
        aao = r.headers["Azure-AsyncOperation"]
        deadline = time.monotonic() + 20
        while not [j for j in jobs(url) if j["kind"] == "instance.configure" and j["state"] == "running"]:
            assert time.monotonic() < deadline, "the worker never claimed the job"
            time.sleep(0.1)
        os.killpg(workers[0].pid, signal.SIGKILL)  # dies holding the lease, mid-job
        workers[0].wait()
        assert client.get(aao).json()["status"] == "InProgress"
        workers.append(start_worker(data_dir, url, "--provisioning-delay", "4"))
        op = wait_operation(client, aao, timeout=60)
        assert op["status"] == "Succeeded", op
        (job,) = [
            j
            for j in jobs(url)
            if j["kind"] == "instance.configure" and j["payload"]["operation"] == op["name"]
        ]
        assert job["state"] == "done" and job["attempts"] == 2
        assert (
            client.get(f"{env.instance_path('slow')}?api-version={API}").json()["properties"][
                "provisioningState"
            ]
            == "Succeeded"
        )


def _verify(
    data_dir: Path, database_url: str, *args: str, environ: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    cmd = [
        sys.executable,
        "-m",
        "dpvault",
        "verify",
        "--data-dir",
        str(data_dir),
        "--database-url",
        database_url,
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(environ or {})})


@dataclass
class Machines:
    """An API process and a worker sharing a vault: one directory every process mounts (NFS), or
    an object store with a data dir per machine, alike only in the keys they are given."""

    url: str
    server: Server
    store_args: list[str]
    environ: dict[str, str]
    worker_dirs: list[Path]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start_worker(self) -> None:
        data_dir = self.worker_dirs[len(self.workers) % len(self.worker_dirs)]
        self.workers.append(start_worker(data_dir, self.url, *self.store_args, environ=self.environ))

    def stop_workers(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGTERM)
                worker.wait(10)
        self.workers.clear()

    def verify(self) -> subprocess.CompletedProcess[str]:
        return _verify(self.worker_dirs[-1], self.url, *self.store_args, environ=self.environ)


@pytest.fixture(params=["one-directory", "azure-blob"])
def machines(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    source_pg: PostgresServer,
    vault_store_args: Callable[..., tuple[list[str], dict[str, str]]],
) -> Any:
    url = source_pg.create_database()
    api_dir = tmp_path / "api"
    if request.param == "one-directory":
        store_args: list[str] = []
        environ: dict[str, str] = {}
        worker_dirs = [api_dir]
    else:  # no shared file system: each machine its own data dir, the same keys
        store_args, environ = vault_store_args("azure")
        environ = {**environ, "DPVAULT_VAULT_KEK": base64.b64encode(os.urandom(32)).decode(),
                   "DPVAULT_SECRETS_KEY": Fernet.generate_key().decode()}  # fmt: skip
        worker_dirs = [tmp_path / "machine-1", tmp_path / "machine-2"]
    server = Server(api_dir, database_url=url, args=["--no-background", *store_args], environ=environ).start()
    found = Machines(url, server, store_args, environ, worker_dirs)
    yield found
    found.stop_workers()
    server.stop()


def test_two_workers_dedupe_in_one_vault_and_collection_never_takes_what_a_backup_writes(
    machines: Machines, source_pg: PostgresServer
) -> None:
    """Vault format 2 shared by processes: a backup taken by one worker reuses the chunks another
    worker stored (the index is the shared database's), and garbage collection started while a backup
    of the vault is writing leaves the vault alone until it is done -- nothing is lost."""
    from tests.integration.test_protection import (
        Protected,
        _lock,
        _wait_for_waiting_dump,
        make_sample_database,
    )

    m = machines
    m.start_worker()  # one worker at a time, to know who ran what
    db = make_sample_database(source_pg, customers=30000, orders=90000)
    source_pg.sql(
        db, "CREATE TABLE logs AS SELECT g AS id, md5(g::text) AS line FROM generate_series(1, 100000) g"
    )
    with m.server.client() as client:
        first = Protected(m.server, client, source_pg, db).create()
        assert first.put()["status"] == "Succeeded"
        one = first.wait_job(first.backup(), timeout=120)
        assert one["status"] == "Completed"
        m.stop_workers()
        m.start_worker()  # another process (on another machine, if each has its own), nothing cached
        second = Protected(m.server, client, source_pg, db)  # a second instance in the same vault
        second.env, second.uri, second.name = first.env, first.uri, f"{first.name}-2"
        assert second.put()["status"] == "Succeeded"
        two = second.wait_job(second.backup(), timeout=120)
        assert two["status"] == "Completed"
        worker_of = [j["extendedInfo"]["additionalDetails"]["Worker"] for j in (one, two)]
        assert worker_of[0] != worker_of[1]
        details = two["extendedInfo"]["additionalDetails"]
        assert int(details["DeduplicatedBytes"]) > 0.9 * int(two["extendedInfo"]["dataTransferredInBytes"])

        # a backup of the vault is writing (pg_dump waits on a lock) while the first instance, and
        # with it what only it used, is deleted: its garbage waits for the backup to finish
        lock = _lock(source_pg, db)
        job = second.backup()
        _wait_for_waiting_dump(source_pg, db)
        r = client.delete(f"{first.env.instance_path(first.name)}?api-version={API}")
        assert r.status_code == 202
        assert wait_operation(client, r.headers["Azure-AsyncOperation"], timeout=60)["status"] == "Succeeded"
        lock.close()
        assert second.wait_job(job, timeout=120)["status"] == "Completed"
        assert len(second.points()) == 2
    out = m.verify()
    assert out.returncode == 0 and "2 recovery points checked: 2 ok, 0 bad" in out.stdout, (
        out.stdout + out.stderr
    )
    m.stop_workers()  # a restart sweeps: the vault's garbage is collected now
    m.start_worker()
    deadline = time.monotonic() + 30
    while _dirty(m.url):
        assert time.monotonic() < deadline, "the vault was never collected"
        time.sleep(0.2)
    out = m.verify()
    assert out.returncode == 0 and "2 recovery points checked: 2 ok, 0 bad" in out.stdout, (
        out.stdout + out.stderr
    )


def _dirty(database_url: str) -> list[Any]:
    engine = create_engine(sync_url(database_url))
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT vault_key FROM vault_maintenance WHERE dirty_since IS NOT NULL")
        ).all()
    engine.dispose()
    return list(rows)

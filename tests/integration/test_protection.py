"""Real protection: a real PostgreSQL database backed up with pg_dump through the API, on the
policy's schedule (manual clock), with retention, failures and crashes."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.support import (
    API,
    SUB,
    Env,
    PostgresServer,
    Server,
    instance_body,
    vault_body,
    vault_path,
    wait_operation,
)
from tests.vaultfiles import pack_files, read_point, unreferenced_packs, vault_dir


def make_sample_database(
    pg: PostgresServer, name: str | None = None, *, customers: int = 2000, orders: int = 3000
) -> str:
    """A database with a few thousand rows over several tables, an index, a sequence and a view."""
    name = name or f"shop_{uuid.uuid4().hex[:8]}"
    pg.create_database(name)
    pg.sql(
        name,
        f"""
        CREATE SEQUENCE invoice_no START 1000;
        CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, email text UNIQUE);
        CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id int REFERENCES customers(id),
                             amount numeric(10,2), created timestamptz DEFAULT now());
        CREATE INDEX orders_customer ON orders (customer_id);
        CREATE VIEW big_orders AS SELECT * FROM orders WHERE amount > 500;
        INSERT INTO customers (name, email) SELECT 'c' || g, 'c' || g || '@example.com' FROM generate_series(1, {customers}) g;
        INSERT INTO orders (customer_id, amount) SELECT 1 + g % {customers}, (g % 1000)::numeric FROM generate_series(1, {orders}) g;
        """,
    )
    return name


def daily_policy(start: str = "2021-01-03T02:00:00+00:00") -> dict[str, Any]:
    """Daily at 02:00 UTC; Sunday backups tagged Weekly (kept 4 weeks), the rest Default (kept 3 days)."""
    store = {"objectType": "DataStoreInfoBase", "dataStoreType": "VaultStore"}
    return {
        "properties": {
            "objectType": "BackupPolicy",
            "datasourceTypes": ["Microsoft.DBforPostgreSQL/servers/databases"],
            "policyRules": [
                {
                    "objectType": "AzureBackupRule", "name": "BackupDaily", "dataStore": store,
                    "backupParameters": {"objectType": "AzureBackupParams", "backupType": "Full"},
                    "trigger": {
                        "objectType": "ScheduleBasedTriggerContext",
                        "schedule": {"repeatingTimeIntervals": [f"R/{start}/P1D"], "timeZone": "UTC"},
                        "taggingCriteria": [
                            {"isDefault": True, "taggingPriority": 99, "tagInfo": {"tagName": "Default"}},
                            {"isDefault": False, "taggingPriority": 20, "tagInfo": {"tagName": "Weekly"},
                             "criteria": [{"objectType": "ScheduleBasedBackupCriteria", "daysOfTheWeek": ["Sunday"]}]},
                        ],
                    },
                },
                {"objectType": "AzureRetentionRule", "name": "Default", "isDefault": True,
                 "lifecycles": [{"sourceDataStore": store, "deleteAfter": {"objectType": "AbsoluteDeleteOption", "duration": "P3D"}}]},
                {"objectType": "AzureRetentionRule", "name": "Weekly", "isDefault": False,
                 "lifecycles": [{"sourceDataStore": store, "deleteAfter": {"objectType": "AbsoluteDeleteOption", "duration": "P4W"}}]},
            ],
        }
    }  # fmt: skip


class Protected:
    """A vault with the daily policy and one protected database."""

    def __init__(self, server: Server, client: httpx.Client, pg: PostgresServer, database: str, *, validation: str = "DeepValidation",
                 secret: str | None = None) -> None:  # fmt: skip
        self.server, self.client, self.pg, self.database = server, client, pg, database
        self.env = Env(client)
        self.uri = f"https://kv{uuid.uuid4().hex[:6]}.vault.azure.net/secrets/{database.replace('_', '-')}"
        self.name = f"bi-{database}"
        self.validation = validation
        self.secret = pg.ado(database) if secret is None else secret

    def create(self) -> Protected:
        c = self.client
        r = c.put(
            f"{self.env.vault_path}?api-version={API}",
            json={
                "location": "westus",
                "properties": {
                    "storageSettings": [{"datastoreType": "VaultStore", "type": "LocallyRedundant"}]
                },
            },
        )
        wait_operation(c, r.headers["Azure-AsyncOperation"])
        r = c.put(f"{self.env.policy_id}?api-version={API}", json=daily_policy())
        assert r.status_code == 200, r.text
        self.server.set_secret(self.uri, self.secret)
        return self

    def put(self) -> dict[str, Any]:
        body = instance_body(
            self.env.policy_id, database=self.database, secret_uri=self.uri, validation=self.validation
        )
        r = self.client.put(f"{self.env.instance_path(self.name)}?api-version={API}", json=body)
        assert r.status_code == 201, r.text
        return wait_operation(self.client, r.headers["Azure-AsyncOperation"])

    def instance(self) -> dict[str, Any]:
        return self.client.get(f"{self.env.instance_path(self.name)}?api-version={API}").json()

    def backup(self, tag: str | None = None) -> str:
        options: dict[str, Any] = {"ruleName": "BackupDaily"}
        if tag:
            options["triggerOption"] = {"retentionTagOverride": tag}
        r = self.client.post(
            f"{self.env.instance_path(self.name)}/backup?api-version={API}",
            json={"backupRuleOptions": options},
        )
        assert r.status_code == 202, r.text
        assert wait_operation(self.client, r.headers["Azure-AsyncOperation"])["status"] == "Succeeded"
        result = self.client.get(r.headers["Location"])
        assert result.status_code == 200, result.text
        return result.json()["jobId"]

    def job(self, job_id: str) -> dict[str, Any]:
        r = self.client.get(f"{self.env.vault_path}/backupJobs/{job_id}?api-version={API}")
        assert r.status_code == 200, r.text
        return r.json()["properties"]

    def wait_job(self, job_id: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["status"] != "InProgress":
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} still InProgress")
            time.sleep(0.1)

    def points(self) -> list[dict[str, Any]]:
        r = self.client.get(f"{self.env.instance_path(self.name)}/recoveryPoints?api-version={API}")
        assert r.status_code == 200, r.text
        return r.json()["value"]

    def jobs(self) -> list[dict[str, Any]]:
        return self.client.get(f"{self.env.vault_path}/backupJobs?api-version={API}").json()["value"]


def vault_files(server: Server) -> list[Path]:
    root = server.data_dir / "vault"
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_adhoc_backup_is_a_real_checksummed_pg_dump(
    server: Server, client: httpx.Client, source_pg: PostgresServer, tmp_path: Path
) -> None:
    """Protected through the official SDK with the daily policy and a DeepValidation PUT; the secret
    stored with `dpvault secrets set`; an adhoc backup through the SDK."""
    from azure.mgmt.dataprotection import DataProtectionMgmtClient

    from tests.e2e.test_sdk import DpvaultCredential

    db = make_sample_database(source_pg)
    p = Protected(server, client, source_pg, db).create()
    sdk = DataProtectionMgmtClient(
        DpvaultCredential(server), SUB, base_url=server.base, connection_verify=server.ca
    )
    body = instance_body(p.env.policy_id, database=db, secret_uri=p.uri, validation="DeepValidation")
    instance = sdk.backup_instances.begin_create_or_update(
        p.env.rg, p.env.vault, p.name, body, polling_interval=0
    ).result()
    assert instance.properties.current_protection_state == "ProtectionConfigured"
    triggered = sdk.backup_instances.begin_adhoc_backup(
        p.env.rg, p.env.vault, p.name, {"backupRuleOptions": {"ruleName": "BackupDaily"}}, polling_interval=0
    ).result()
    job = p.wait_job(triggered.job_id)
    assert job["status"] == "Completed", job
    assert job["operation"] == "Backup" and job["isUserTriggered"] is True
    points = p.points()
    assert len(points) == 1
    rp = points[0]
    props = rp["properties"]
    assert props["objectType"] == "AzureBackupDiscreteRecoveryPoint"
    assert props["recoveryPointType"] == "Full"
    assert props["retentionTagName"] == "Default"
    assert props["policyName"] == p.env.policy
    assert job["extendedInfo"]["additionalDetails"]["RecoveryPointId"] == rp["name"]
    meta = dict(
        part.split(":", 1) for part in props["recoveryPointDataStoresDetails"][0]["metaData"].split(";")
    )
    # vault format 2 seals the point's chunks: its file is read back the way a restore reads it
    dump = tmp_path / f"{rp['name']}.dump"
    dump.write_bytes(read_point(server, rp["name"]))
    assert hashlib.sha256(dump.read_bytes()).hexdigest() == meta["sha256"]
    assert dump.stat().st_size == int(meta["size"]) == int(job["extendedInfo"]["dataTransferredInBytes"])
    assert b"CREATE TABLE public.customers" not in b"".join(
        p.read_bytes() for p in pack_files(server)
    )  # sealed
    toc = subprocess.run(
        [_pg_restore(), "--list", str(dump)], capture_output=True, text=True, check=True
    ).stdout
    for table in ("customers", "orders"):
        assert f" TABLE public {table} " in toc
    assert " SEQUENCE public invoice_no " in toc
    assert " VIEW public big_orders " in toc
    assert " INDEX public orders_customer " in toc
    got = client.get(f"{p.env.instance_path(p.name)}/recoveryPoints/{rp['name']}?api-version={API}")
    assert got.status_code == 200 and got.json()["name"] == rp["name"]


def _pg_restore() -> str:
    return str(next(Path("/usr/lib/postgresql").glob("*/bin/pg_restore"), "pg_restore"))


@pytest.mark.parametrize(
    "failure", ["wrong-password", "unknown-secret", "unreachable-host", "wrong-database"]
)
def test_deep_validation_failures_end_failed_with_user_facing_errors(
    server: Server, client: httpx.Client, source_pg: PostgresServer, failure: str
) -> None:
    db = make_sample_database(source_pg, customers=10, orders=10)
    secret = {
        "wrong-password": source_pg.ado(db, password="not-the-password"),
        "unreachable-host": f"Server=127.0.0.1;Port=1;Database={db};User Id=postgres;Password=x;",
        "wrong-database": source_pg.ado("postgres"),
    }.get(failure)
    p = Protected(server, client, source_pg, db, secret=secret).create()
    if failure == "unknown-secret":
        p.uri = p.uri + "-missing"
    expected = {
        "wrong-password": "UserErrorDatabaseAuthenticationFailed",
        "unknown-secret": "UserErrorSecretNotFound",
        "unreachable-host": "UserErrorDatabaseServerUnreachable",
        "wrong-database": "UserErrorDatabaseMismatch",
    }[failure]
    op = p.put()
    assert op["status"] == "Failed"
    assert op["error"]["code"] == expected
    assert "not-the-password" not in str(op)
    props = p.instance()["properties"]
    assert props["provisioningState"] == "Failed"
    assert props["currentProtectionState"] == "ConfiguringProtectionFailed"
    assert props["protectionStatus"]["status"] == "ConfiguringProtectionFailed"
    details = props["protectionErrorDetails"]
    assert details["code"] == expected and details["isUserError"] is True and details["recommendedAction"]
    # nothing half-created: no recovery point, the configure job failed, and no backup can start
    assert p.points() == []
    configure = [j for j in p.jobs() if j["properties"]["operation"] == "ConfigureBackup"]
    assert [j["properties"]["status"] for j in configure] == ["Failed"]
    r = client.post(
        f"{p.env.instance_path(p.name)}/backup?api-version={API}",
        json={"backupRuleOptions": {"ruleName": "BackupDaily"}},
    )
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "UserErrorBackupInstanceNotProtected"


def _advance(client: httpx.Client, seconds: float) -> dict[str, Any]:
    r = client.post("/dpvault/clock/advance", json={"seconds": seconds}, timeout=600)
    assert r.status_code == 200, r.text
    return r.json()


def _worker(server: Server) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "dpvault", "worker", "--data-dir", str(server.data_dir), "--clock", "manual"]
    if server.database_url:
        cmd += ["--database-url", server.database_url]
    log = open(server.data_dir / "worker.log", "ab")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)


def test_manual_clock_runs_every_daily_backup_once_with_tags_and_retention(
    make_server: Callable[..., Server], source_pg: PostgresServer
) -> None:
    server = make_server("--clock", "manual")
    second_worker = _worker(server)
    try:
        with server.client() as client:
            db = make_sample_database(source_pg, customers=50, orders=50)
            p = Protected(server, client, source_pg, db).create()
            assert p.put()["status"] == "Succeeded"
            start = datetime.fromisoformat(client.get("/dpvault/clock").json()["now"].replace("0Z", "+00:00"))
            result = _advance(client, 8 * 86400)
            end = start + timedelta(days=8)
            # every 02:00 UTC occurrence in (start, end]
            first = start.replace(hour=2, minute=0, second=0, microsecond=0)
            if first <= start:
                first += timedelta(days=1)
            occurrences = [first + timedelta(days=k) for k in range(9) if first + timedelta(days=k) <= end]
            assert len(occurrences) == 8
            assert result["backups"] == 8

            backups = [j["properties"] for j in p.jobs() if j["properties"]["operation"] == "Backup"]
            assert sorted(b["startTime"] for b in backups) == sorted(_iso(o) for o in occurrences)
            assert all(b["status"] == "Completed" for b in backups), backups
            assert all(b["isUserTriggered"] is False for b in backups)
            workers = {b["extendedInfo"]["additionalDetails"]["Worker"] for b in backups}
            print(
                f"backups per worker: { {w: sum(1 for b in backups if b['extendedInfo']['additionalDetails']['Worker'] == w) for w in workers} }"
            )

            def tag(o: datetime) -> str:
                return "Weekly" if o.weekday() == 6 else "Default"

            def kept(o: datetime) -> bool:
                return o + (timedelta(weeks=4) if tag(o) == "Weekly" else timedelta(days=3)) > end

            expected = {_iso(o): tag(o) for o in occurrences if kept(o)}
            got = {
                rp["properties"]["recoveryPointTime"]: rp["properties"]["retentionTagName"]
                for rp in p.points()
            }
            assert got == expected
            assert result["expired"] == 8 - len(expected)
            retention = [j for j in p.jobs() if j["properties"]["operation"] == "Retention"]
            assert sum(
                int(j["properties"]["extendedInfo"]["additionalDetails"]["DeletedRecoveryPoints"])
                for j in retention
            ) == 8 - len(expected)
            # deleted recovery points left no bytes behind: their manifests went, and no pack
            # holds only their chunks (vault format 2 shares packs between points)
            names = {f.name for f in vault_files(server) if f.suffix != ".pack" and "keys" not in f.parts}
            assert names == {f"{rp['name']}.manifest" for rp in p.points()}
            assert unreferenced_packs(server, p.env.vault_path) == []
    finally:
        second_worker.terminate()
        second_worker.wait(10)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")


def _lock(pg: PostgresServer, database: str) -> psycopg.Connection:
    """Hold an ACCESS EXCLUSIVE lock on orders: pg_dump connects, then waits, mid-backup."""
    conn = psycopg.connect(host=str(pg.root), port=pg.port, user="postgres", dbname=database)
    conn.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
    return conn


def _wait_for_waiting_dump(pg: PostgresServer, database: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = pg.sql(
            database,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_dump' OR application_name = 'dpvault' AND wait_event_type = 'Lock'",
        )
        if rows and rows[0][0]:
            return
        time.sleep(0.1)
    raise AssertionError("pg_dump never started waiting")


def test_database_stopped_mid_backup_fails_the_job_and_leaves_nothing(
    server: Server, client: httpx.Client, tmp_path: Path
) -> None:
    pg = PostgresServer(Path(__import__("tempfile").mkdtemp(prefix="dpvault-stop-")))
    pg.start()
    try:
        db = make_sample_database(pg, customers=100, orders=100)
        p = Protected(server, client, pg, db).create()
        assert p.put()["status"] == "Succeeded"
        before = vault_files(server)
        lock = _lock(pg, db)
        job_id = p.backup()
        _wait_for_waiting_dump(pg, db)
        pg.stop()  # immediate shutdown, mid-backup
        lock.close()
        job = p.wait_job(job_id)
        assert job["status"] == "Failed"
        assert job["errorDetails"][0]["code"] in ("UserErrorDatabaseConnectionLost", "UserErrorBackupFailed")
        assert p.points() == []
        assert vault_files(server) == before
    finally:
        pg.stop()


def test_server_killed_mid_backup_resumes_after_restart_without_orphans(
    make_server: Callable[..., Server], source_pg: PostgresServer
) -> None:
    server = make_server("--lease-seconds", "2")
    db = make_sample_database(source_pg, customers=100, orders=100)
    with server.client() as client:
        p = Protected(server, client, source_pg, db).create()
        assert p.put()["status"] == "Succeeded"
        lock = _lock(source_pg, db)
        job_id = p.backup()
        _wait_for_waiting_dump(source_pg, db)
        assert _writing_points(server), "the backup should have recorded the point it is writing"
    server.kill()
    lock.close()
    server.start()
    with server.client() as client:
        p.client = client
        p.env.client = client
        job = p.wait_job(job_id)
        assert job["status"] == "Completed", job
        points = p.points()
        assert len(points) == 1
        files = vault_files(server)
        assert [f.name for f in files if f.name.endswith(".partial")] == []
        assert {f.name for f in files if f.suffix == ".manifest"} == {f"{points[0]['name']}.manifest"}
        assert _writing_points(server) == []
        assert unreferenced_packs(server, p.env.vault_path) == []


def _writing_points(server: Server) -> list[str]:
    """Ids of recovery points being written (state ``writing``) in the server's state database."""
    from sqlalchemy import create_engine, text

    from dpvault.store.engines import sync_url

    url = server.database_url or f"sqlite:///{server.data_dir / 'state.db'}"
    engine = create_engine(sync_url(url))
    with engine.begin() as conn:
        rows = conn.execute(text("SELECT id FROM recovery_points WHERE state = 'writing'")).all()
    engine.dispose()
    return [r[0] for r in rows]


def _shift_clock(server: Server, seconds: float) -> None:
    """Move the stored manual clock while the server is down: as if it had been off for that long."""
    from sqlalchemy import create_engine, text

    from dpvault.store.engines import sync_url

    url = server.database_url or f"sqlite:///{server.data_dir / 'state.db'}"
    engine = create_engine(sync_url(url))
    with engine.begin() as conn:
        conn.execute(text("UPDATE clock_state SET now = now + :s"), {"s": seconds})
    engine.dispose()


def test_after_downtime_one_catch_up_backup_not_a_storm(
    make_server: Callable[..., Server], source_pg: PostgresServer
) -> None:
    server = make_server("--clock", "manual")
    db = make_sample_database(source_pg, customers=20, orders=20)
    with server.client() as client:
        p = Protected(server, client, source_pg, db).create()
        assert p.put()["status"] == "Succeeded"
    server.stop()
    _shift_clock(server, 5 * 86400)  # five daily occurrences missed
    server.start()
    with server.client() as client:
        p.client = p.env.client = client
        now = datetime.fromisoformat(client.get("/dpvault/clock").json()["now"].replace("0Z", "+00:00"))
        latest = now.replace(hour=2, minute=0, second=0, microsecond=0)
        if latest > now:
            latest -= timedelta(days=1)
        deadline = time.monotonic() + 30
        while not (
            backups := [j["properties"] for j in p.jobs() if j["properties"]["operation"] == "Backup"]
        ):
            assert time.monotonic() < deadline, "no catch-up backup"
            time.sleep(0.1)
        assert len(backups) == 1
        assert backups[0]["startTime"] == _iso(latest)
        assert p.wait_job(backups[0]["activityID"])["status"] == "Completed"
        _advance(client, 86400)
        backups = [j["properties"] for j in p.jobs() if j["properties"]["operation"] == "Backup"]
        assert sorted(b["startTime"] for b in backups) == [_iso(latest), _iso(latest + timedelta(days=1))]


def test_recovery_point_filter_and_instance_delete_removes_backup_data(
    server: Server, client: httpx.Client, source_pg: PostgresServer
) -> None:
    db = make_sample_database(source_pg, customers=20, orders=20)
    p = Protected(server, client, source_pg, db).create()
    assert p.put()["status"] == "Succeeded"
    for _ in range(3):
        assert p.wait_job(p.backup())["status"] == "Completed"
    points = p.points()
    assert len(points) == 3
    times = sorted(rp["properties"]["recoveryPointTime"] for rp in points)
    assert [rp["properties"]["recoveryPointTime"] for rp in points] == sorted(
        times, reverse=True
    )  # newest first
    base = f"{p.env.instance_path(p.name)}/recoveryPoints"
    r = client.get(
        base, params={"api-version": API, "$filter": f"startDate eq '{times[1]}' and endDate eq '{times[2]}'"}
    )
    assert r.status_code == 200, r.text
    assert sorted(rp["properties"]["recoveryPointTime"] for rp in r.json()["value"]) == times[1:]
    bad = client.get(base, params={"api-version": API, "$filter": "color eq 'red'"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "InvalidFilter"
    ids = {rp["name"] for rp in points}
    assert ids <= {f.name.split(".")[0] for f in vault_files(server)}

    r = client.delete(f"{p.env.instance_path(p.name)}?api-version={API}")
    assert r.status_code == 202
    assert wait_operation(client, r.headers["Azure-AsyncOperation"])["status"] == "Succeeded"
    assert not ids & {f.name.split(".")[0] for f in vault_files(server)}
    assert pack_files(server, p.env.vault_path) == []  # the packs only its points used went too
    assert client.get(f"{p.env.instance_path(p.name)}/recoveryPoints?api-version={API}").status_code == 404


def test_deleting_the_resource_group_deletes_its_backup_data(
    server: Server, client: httpx.Client, source_pg: PostgresServer
) -> None:
    db = make_sample_database(source_pg, customers=20, orders=20)
    p = Protected(server, client, source_pg, db).create()
    assert p.put()["status"] == "Succeeded"
    assert p.wait_job(p.backup())["status"] == "Completed"
    (rp,) = p.points()
    assert any(f.name.startswith(rp["name"]) for f in vault_files(server))
    r = client.delete(
        f"/subscriptions/{p.env.vault_path.split('/')[2]}/resourceGroups/{p.env.rg}?api-version=2021-04-01"
    )
    assert r.status_code == 200, r.text
    assert not any(f.name.startswith(rp["name"]) for f in vault_files(server))
    assert not vault_dir(server, p.env.vault_path).exists() or not list(
        vault_dir(server, p.env.vault_path).rglob("*.*")
    )
    # a vault of the same name starts empty: no jobs or points of its predecessor
    p.create()
    assert p.jobs() == []


def test_a_secret_serves_only_its_own_tenant(
    server: Server, client: httpx.Client, source_pg: PostgresServer
) -> None:
    """Tenant B names tenant A's secret URI: DeepValidation fails as if it did not exist (B never
    reaches A's database with A's credentials); once B stores its own secret under that URI, it works."""
    db = make_sample_database(source_pg, customers=5, orders=5)
    a = Protected(server, client, source_pg, db).create()
    assert a.put()["status"] == "Succeeded"

    tenant_b, sub_b = str(uuid.uuid4()), str(uuid.uuid4())
    vault = vault_path(f"rg-{uuid.uuid4().hex[:6]}", "vault-b", sub_b)
    policy_id = f"{vault}/backupPolicies/policy1"
    instance = f"{vault}/backupInstances/bi-b"
    headers = {"Authorization": f"Bearer {server.token('--tenant', tenant_b)}"}
    with httpx.Client(base_url=server.base, verify=server.ssl_context(), headers=headers, timeout=30) as b:
        r = b.put(f"{vault}?api-version={API}", json=vault_body())
        assert r.status_code == 201, r.text
        wait_operation(b, r.headers["Azure-AsyncOperation"])
        assert b.put(f"{policy_id}?api-version={API}", json=daily_policy()).status_code == 200
        body = instance_body(policy_id, database=db, secret_uri=a.uri, validation="DeepValidation")
        r = b.put(f"{instance}?api-version={API}", json=body)
        assert r.status_code == 201, r.text
        op = wait_operation(b, r.headers["Azure-AsyncOperation"])
        assert op["status"] == "Failed" and op["error"]["code"] == "UserErrorSecretNotFound", op

        server.set_secret(a.uri, source_pg.ado(db), "--tenant", tenant_b)
        r = b.put(f"{instance}?api-version={API}", json=body)
        assert r.status_code == 200, r.text
        assert wait_operation(b, r.headers["Azure-AsyncOperation"])["status"] == "Succeeded"
    listed = subprocess.run(
        [sys.executable, "-m", "dpvault", "secrets", "list", "--data-dir", str(server.data_dir),
         *(["--database-url", server.database_url] if server.database_url else [])],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    assert f"{a.uri}  tenant={tenant_b}" in listed and f"{a.uri}  tenant=00000000-" in listed
    assert source_pg.password not in listed


def test_a_long_advance_answers_in_parts_and_misses_nothing(
    make_server: Callable[..., Server], source_pg: PostgresServer
) -> None:
    """An advance past its time budget answers complete=false where it stopped; posting the same
    target again goes on from there, and every backup in between still runs exactly once."""
    server = make_server("--clock", "manual")
    with server.client() as client:
        db = make_sample_database(source_pg, customers=5, orders=5)
        p = Protected(server, client, source_pg, db).create()
        assert p.put()["status"] == "Succeeded"
        start = datetime.fromisoformat(client.get("/dpvault/clock").json()["now"].replace("0Z", "+00:00"))
        target = _iso(start + timedelta(days=6))
        parts, backups = [], 0
        while True:
            r = client.post("/dpvault/clock/advance", json={"to": target, "maxSeconds": 0.001}, timeout=600)
            assert r.status_code == 200, r.text
            parts.append(r.json())
            backups += parts[-1]["backups"]
            if parts[-1]["complete"]:
                break
            assert parts[-1]["now"] < target
            assert len(parts) < 50
        assert len(parts) > 1 and parts[-1]["now"] == target
        assert backups == 6
        assert sum(1 for j in p.jobs() if j["properties"]["operation"] == "Backup") == 6
        for bad in (0, -1, 51):
            r = client.post("/dpvault/clock/advance", json={"seconds": 1, "maxSeconds": bad})
            assert r.status_code == 400 and r.json()["error"]["target"] == "maxSeconds"

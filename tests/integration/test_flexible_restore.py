"""Whole-server points restored into a mapped flexible server (beyond Azure), and the failures of
flexible-server backups and restores: each a Failed job with a UserFacingError, nothing of it left.

Every test runs its own PostgreSQL servers (a whole-server backup takes every database of its
server; roles are per server), names its vault and mapped server ids uniquely, and talks to the
session's dpvault server over HTTPS."""

from __future__ import annotations

import shutil
import socket
import tempfile
import time
import urllib.error
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.mgmt.dataprotection import DataProtectionMgmtClient

from tests.e2e.test_sdk import DpvaultCredential
from tests.integration.test_flexible_server import FLEX_TYPE, _wait_job, flex_instance, tables
from tests.integration.test_sources import account_id, dpvault, files_target, set_source
from tests.support import API, SUB, Env, PostgresServer, Server, policy_body, wait_operation

DATABASES = ("crm", "inventory", "shop")
MARK = "dpvault: being restored by job"


@pytest.fixture
def make_pg() -> Iterator[Callable[[], PostgresServer]]:
    """Throwaway PostgreSQL servers, stopped at the end (not under pytest's tmp dir: the server runs
    as ``postgres``)."""
    started: list[PostgresServer] = []

    def make() -> PostgresServer:
        pg = PostgresServer(Path(tempfile.mkdtemp(prefix="dpvault-flexrestore-")))
        pg.start()
        started.append(pg)
        return pg

    yield make
    for pg in started:
        pg.stop()
        shutil.rmtree(pg.root, ignore_errors=True)


def populate(pg: PostgresServer, *, notes: bool = False, dblink: bool = False) -> None:
    """Three databases, roles with attributes, a comment, a setting and a membership, a non-public
    schema owned by one role and readable by another. ``notes``: a table in ``postgres`` too;
    ``dblink``: ``shop`` uses an extension only a superuser may create."""
    pg.sql(
        "postgres",
        "CREATE ROLE app_group NOLOGIN; CREATE ROLE app_owner NOLOGIN; "
        "CREATE ROLE app_reader LOGIN CONNECTION LIMIT 7; GRANT app_group TO app_reader; "
        "COMMENT ON ROLE app_reader IS 'reads; the ''sales'' schema'; "
        "ALTER ROLE app_reader SET search_path TO sales, public",
    )
    for db in DATABASES:
        pg.sql("postgres", f'CREATE DATABASE "{db}"')
        pg.sql(db, "CREATE TABLE items (id int PRIMARY KEY, name text, price numeric(10, 2))")
        pg.sql(db, f"INSERT INTO items SELECT g, '{db}-' || g, g * 1.25 FROM generate_series(1, 300) g")
    pg.sql("crm", "CREATE SCHEMA sales AUTHORIZATION app_owner")
    pg.sql("crm", "CREATE TABLE sales.leads (id serial PRIMARY KEY, who text, at timestamptz DEFAULT now())")
    pg.sql("crm", "INSERT INTO sales.leads (who) SELECT 'lead ' || g FROM generate_series(1, 120) g")
    pg.sql("crm", "ALTER TABLE sales.leads OWNER TO app_owner")
    pg.sql("crm", "GRANT USAGE ON SCHEMA sales TO app_reader; GRANT SELECT ON sales.leads TO app_reader")
    pg.sql("shop", "CREATE TABLE orders (id int PRIMARY KEY, item int REFERENCES items (id), qty int)")
    pg.sql("shop", "INSERT INTO orders SELECT g, 1 + g % 300, g % 5 FROM generate_series(1, 500) g")
    if notes:
        pg.sql("postgres", "CREATE TABLE notes (id int PRIMARY KEY, body text)")
        pg.sql("postgres", "INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, 40) g")
    if dblink:
        pg.sql("shop", "CREATE EXTENSION dblink")


def databases(pg: PostgresServer) -> set[str]:
    return {r[0] for r in pg.sql("postgres", "SELECT datname FROM pg_database WHERE NOT datistemplate")}


def roles(pg: PostgresServer) -> set[str]:
    return {r[0] for r in pg.sql("postgres", "SELECT rolname FROM pg_roles WHERE rolname !~ '^pg_'")}


def marks(pg: PostgresServer) -> list[str]:
    """Databases and roles still carrying a restore job's mark."""
    rows = pg.sql(
        "postgres",
        "SELECT datname FROM pg_database WHERE shobj_description(oid, 'pg_database') LIKE 'dpvault: %' "
        "UNION ALL SELECT rolname FROM pg_roles WHERE shobj_description(oid, 'pg_authid') LIKE 'dpvault: %'",
    )
    return sorted(r[0] for r in rows)


def wait_for(check: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def server_id(prefix: str) -> str:
    return (
        f"/subscriptions/{SUB}/resourceGroups/rg-pg/providers/Microsoft.DBforPostgreSQL/flexibleServers/"
        f"{prefix}-{uuid.uuid4().hex[:8]}"
    )


def into_server(target_id: str, criteria: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    info = {"objectType": "Datasource", "resourceID": target_id, "resourceName": target_id.rsplit("/", 1)[-1],
            "resourceType": FLEX_TYPE, "resourceLocation": "westus", "datasourceType": FLEX_TYPE}  # fmt: skip
    if criteria is None:
        return {"objectType": "RestoreTargetInfo", "recoveryOption": "FailIfExists", "restoreLocation": "westus",
                "datasourceInfo": info}  # fmt: skip
    return {"objectType": "ItemLevelRestoreTargetInfo", "recoveryOption": "FailIfExists",
            "restoreLocation": "westus", "datasourceInfo": info, "restoreCriteria": criteria}  # fmt: skip


def item(path: str, rename: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"objectType": "ItemPathBasedRestoreCriteria", "itemPath": path,
                            "isPathRelativeToBackupItem": False, **extra}  # fmt: skip
    if rename:
        body["renameTo"] = rename
    return body


@dataclass
class Protected:
    """A flexible server protected by an instance of its own vault, reached through its mapping."""

    server: Server
    client: httpx.Client
    env: Env
    source_id: str
    name: str = "pgflex"

    @classmethod
    def create(cls, server: Server, client: httpx.Client, source: PostgresServer) -> Protected:
        env = Env(client).create()
        r = client.put(
            f"{env.vault_path}/backupPolicies/flexpolicy?api-version={API}", json=policy_body(FLEX_TYPE)
        )
        assert r.status_code == 200, r.text
        p = cls(server, client, env, server_id("src"))
        set_source(server, p.source_id, source.url("postgres"))
        r = client.put(f"{env.instance_path(p.name)}?api-version={API}",
                       json=flex_instance(f"{env.vault_path}/backupPolicies/flexpolicy", p.source_id))  # fmt: skip
        assert r.status_code == 201, r.text
        assert wait_operation(client, r.headers["Azure-AsyncOperation"])["status"] == "Succeeded"
        return p

    def backup(self) -> dict[str, Any]:
        r = self.client.post(f"{self.env.instance_path(self.name)}/backup?api-version={API}",
                             json={"backupRuleOptions": {"ruleName": "BackupWeekly"}})  # fmt: skip
        assert r.status_code == 202, r.text
        assert wait_operation(self.client, r.headers["Azure-AsyncOperation"])["status"] == "Succeeded"
        return _wait_job(self.client, self.env, self.client.get(r.headers["Location"]).json()["jobId"])

    def points(self) -> list[str]:
        r = self.client.get(f"{self.env.instance_path(self.name)}/recoveryPoints?api-version={API}")
        assert r.status_code == 200, r.text
        return [p["name"] for p in r.json()["value"]]

    def request(self, rp: str, target: dict[str, Any]) -> dict[str, Any]:
        return {"objectType": "AzureBackupRecoveryPointBasedRestoreRequest", "sourceDataStoreType": "VaultStore",
                "recoveryPointId": rp, "restoreTargetInfo": target}  # fmt: skip

    def post(self, action: str, rp: str, target: dict[str, Any]) -> httpx.Response:
        body = self.request(rp, target)
        return self.client.post(f"{self.env.instance_path(self.name)}/{action}?api-version={API}",
                                json={"restoreRequestObject": body} if action == "validateRestore" else body)  # fmt: skip

    def validate(self, rp: str, target: dict[str, Any]) -> dict[str, Any]:
        r = self.client.post(f"{self.env.instance_path(self.name)}/validateRestore?api-version={API}",
                             json={"restoreRequestObject": self.request(rp, target)})  # fmt: skip
        assert r.status_code == 202, r.text
        return wait_operation(self.client, r.headers["Azure-AsyncOperation"], timeout=60)

    def restore(self, rp: str, target: dict[str, Any]) -> dict[str, Any]:
        r = self.client.post(f"{self.env.instance_path(self.name)}/restore?api-version={API}",
                             json=self.request(rp, target))  # fmt: skip
        assert r.status_code == 202, r.text
        assert wait_operation(self.client, r.headers["Azure-AsyncOperation"])["status"] == "Succeeded"
        return _wait_job(self.client, self.env, self.client.get(r.headers["Location"]).json()["jobId"])


def backed_up(server: Server, client: httpx.Client, source: PostgresServer) -> tuple[Protected, str]:
    p = Protected.create(server, client, source)
    job = p.backup()
    assert job["status"] == "Completed", job
    (rp,) = p.points()
    return p, rp


def error_of(job: dict[str, Any]) -> dict[str, Any]:
    assert job["status"] == "Failed", job
    (error,) = job["errorDetails"]
    return error


# -- (a) the whole point into a fresh server, in one request ------------------------------------


def test_a_whole_server_point_restores_into_a_fresh_mapped_server_in_one_request(
    server: Server, client: httpx.Client, make_pg: Callable[[], PostgresServer]
) -> None:
    source = make_pg()
    populate(source, notes=True)
    expected = {db: tables(source, db) for db in (*DATABASES, "postgres")}
    assert expected["crm"]["sales.leads"][0] == 120 and expected["postgres"]["public.notes"][0] == 40
    p, rp = backed_up(server, client, source)
    source.sql("shop", "DELETE FROM orders WHERE id % 3 = 0")  # after the point: not what comes back
    source.sql("postgres", "ALTER ROLE app_reader NOLOGIN")

    fresh = make_pg()
    target_id = server_id("fresh")
    set_source(server, target_id, fresh.url("postgres"))
    op = p.validate(rp, into_server(target_id))
    assert op["status"] == "Succeeded", op
    assert databases(fresh) == {"postgres"}  # validateRestore writes nothing

    sdk = DataProtectionMgmtClient(
        DpvaultCredential(server), SUB, base_url=server.base, connection_verify=server.ca, api_version=API
    )
    done = sdk.backup_instances.begin_trigger_restore(
        p.env.rg, p.env.vault, p.name, p.request(rp, into_server(target_id)), polling_interval=0
    ).result()
    job = _wait_job(client, p.env, done.job_id)
    assert job["status"] == "Completed", job
    details = job["extendedInfo"]["additionalDetails"]
    assert details["RestoredDatabases"].split(",") == ["crm", "inventory", "postgres", "shop"]
    assert details["CreatedDatabases"].split(",") == ["crm", "inventory", "shop"]  # postgres existed, empty
    assert set(details["CreatedRoles"].split(",")) == {"app_group", "app_owner", "app_reader"}
    assert details["ExistingRoles"] == "postgres"

    for db, state in expected.items():
        assert tables(fresh, db) == state, db
    # the roles as they were at the point: attributes, comment, setting, membership, ownership, grants
    (reader,) = fresh.sql(
        "postgres",
        "SELECT rolcanlogin, rolconnlimit, rolsuper, rolconfig, shobj_description(oid, 'pg_authid') "
        "FROM pg_roles WHERE rolname = 'app_reader'",
    )
    assert reader[:4] == (True, 7, False, ["search_path=sales, public"]), reader
    assert wait_for(lambda: not marks(fresh)), marks(fresh)  # released once Completed was committed
    assert fresh.sql("postgres", "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles "
                                 "WHERE rolname = 'app_reader'") == [("reads; the 'sales' schema",)]  # fmt: skip
    assert fresh.sql("postgres", "SELECT pg_has_role('app_reader', 'app_group', 'MEMBER')") == [(True,)]
    assert fresh.sql("crm", "SELECT tableowner FROM pg_tables WHERE tablename = 'leads'") == [("app_owner",)]
    assert fresh.sql("crm", "SELECT has_table_privilege('app_reader', 'sales.leads', 'SELECT'), "
                            "has_table_privilege('app_reader', 'public.items', 'SELECT')") == [(True, False)]  # fmt: skip
    assert fresh.sql("shop", "SELECT count(*) FROM orders o JOIN items i ON i.id = o.item") == [(500,)]

    # the same request again: every database is there now -> FailIfExists, all of them named
    again = p.restore(rp, into_server(target_id))
    error = error_of(again)
    assert error["code"] == "UserErrorTargetDatabaseNotEmpty", error
    for db in ("crm", "inventory", "postgres", "shop"):
        assert f"'{db}'" in error["message"]
    for db, state in expected.items():
        assert tables(fresh, db) == state, db


# -- (b) FailIfExists ----------------------------------------------------------------------------


def test_fail_if_exists_fails_the_job_before_any_database_or_role_is_created(
    server: Server, client: httpx.Client, make_pg: Callable[[], PostgresServer]
) -> None:
    source = make_pg()
    populate(source)
    p, rp = backed_up(server, client, source)
    target = make_pg()
    target.sql("postgres", 'CREATE DATABASE "inventory"')
    target.sql("inventory", "CREATE TABLE kept (id int); INSERT INTO kept VALUES (1), (2), (3)")
    before_dbs, before_roles = databases(target), roles(target)
    target_id = server_id("occupied")
    set_source(server, target_id, target.url("postgres"))

    op = p.validate(rp, into_server(target_id))
    assert op["status"] == "Failed" and op["error"]["code"] == "UserErrorTargetDatabaseNotEmpty", op
    assert "'inventory'" in op["error"]["message"] and "'crm'" not in op["error"]["message"]
    error = error_of(p.restore(rp, into_server(target_id)))
    assert error["code"] == "UserErrorTargetDatabaseNotEmpty" and error["isUserError"] is True, error
    assert "renameTo" in " ".join(error["recommendedAction"])
    # nothing written: no database of the point, no role, the existing database as it was
    assert databases(target) == before_dbs == {"postgres", "inventory"}
    assert roles(target) == before_roles
    assert target.sql("inventory", "SELECT count(*) FROM kept") == [(3,)]
    assert marks(target) == []

    # an existing database *without* tables is restored into (a new server's postgres is one); one
    # the restore user does not own is refused before anything is written
    target.sql("postgres", "DROP DATABASE inventory")
    target.sql("postgres", "CREATE ROLE somebody NOLOGIN")
    target.sql("postgres", "CREATE DATABASE shop OWNER somebody")
    target.sql("postgres", "CREATE ROLE restorer LOGIN PASSWORD 'restorer-pw' CREATEDB CREATEROLE")
    limited_id = server_id("limited-target")
    set_source(server, limited_id, f"postgresql://restorer:restorer-pw@127.0.0.1:{target.port}/postgres")
    error = error_of(p.restore(rp, into_server(limited_id)))
    assert error["code"] == "UserErrorMissingDBPermissions" and "'shop'" in error["message"], error
    assert databases(target) == {"postgres", "shop"} and "app_reader" not in roles(target)


# -- (c) failures: Failed jobs with UserFacingErrors, nothing half-written -----------------------


def test_flexible_backups_that_cannot_read_the_server_fail_and_leave_no_point(
    server: Server, client: httpx.Client, make_pg: Callable[[], PostgresServer]
) -> None:
    source = make_pg()
    populate(source)
    p = Protected.create(server, client, source)

    # the mapping deleted after the instance was configured
    r = dpvault(server.data_dir, "sources", "delete", p.source_id, database_url=server.database_url)
    assert r.returncode == 0, r.stderr
    error = error_of(p.backup())
    assert error["code"] == "UserErrorDatasourceNotMapped" and "dpvault sources set" in error["message"], (
        error
    )

    # mapped to a port where nothing listens
    with socket.socket() as dead:
        dead.bind(("127.0.0.1", 0))
        set_source(
            server, p.source_id, f"postgresql://postgres:pw@127.0.0.1:{dead.getsockname()[1]}/postgres"
        )
        error = error_of(p.backup())
    assert error["code"] == "UserErrorDatabaseServerUnreachable", error

    # a user without pg_read_all_data that cannot SELECT one table of the last database
    source.sql("postgres", "CREATE ROLE limited LOGIN PASSWORD 'limited-pw'")
    for db in DATABASES:
        source.sql(db, "GRANT SELECT ON ALL TABLES IN SCHEMA public TO limited")
    source.sql("crm", "GRANT USAGE ON SCHEMA sales TO limited")
    source.sql("crm", "GRANT SELECT ON ALL TABLES IN SCHEMA sales TO limited")
    source.sql("crm", "GRANT SELECT ON ALL SEQUENCES IN SCHEMA sales TO limited")
    source.sql("shop", "CREATE TABLE secrets (id int, what text); INSERT INTO secrets VALUES (1, 'x')")
    set_source(server, p.source_id, f"postgresql://limited:limited-pw@127.0.0.1:{source.port}/postgres")
    error = error_of(p.backup())
    assert error["code"] == "UserErrorBackupFailed", error
    assert "Database 'shop'" in error["message"] and "permission denied" in error["message"], error
    assert "limited-pw" not in str(error)

    # the server stopped
    set_source(server, p.source_id, source.url("postgres"))
    source.stop()
    error = error_of(p.backup())
    assert error["code"] == "UserErrorDatabaseServerUnreachable", error
    assert p.points() == []  # none of the four attempts left a recovery point


def test_flexible_restores_that_fail_leave_nothing_behind(
    server: Server, client: httpx.Client, make_pg: Callable[[], PostgresServer], azurite: Any
) -> None:
    source = make_pg()
    populate(source, dblink=True)
    p, rp = backed_up(server, client, source)

    # a target at a port where nothing listens
    with socket.socket() as dead:
        dead.bind(("127.0.0.1", 0))
        down_id = server_id("down")
        set_source(server, down_id, f"postgresql://postgres:pw@127.0.0.1:{dead.getsockname()[1]}/postgres")
        op = p.validate(rp, into_server(down_id))
        assert op["status"] == "Failed" and op["error"]["code"] == "UserErrorDatabaseServerUnreachable", op
        assert error_of(p.restore(rp, into_server(down_id)))["code"] == "UserErrorDatabaseServerUnreachable"

    # an unmapped target server
    unmapped = error_of(p.restore(rp, into_server(server_id("unmapped"))))
    assert unmapped["code"] == "UserErrorDatasourceNotMapped", unmapped

    # a restore user that is not a superuser: roles and the first databases go in, then 'shop' fails
    # (CREATE EXTENSION dblink needs a superuser) -> what the job created is dropped again
    target = make_pg()
    target.sql("postgres", "CREATE ROLE restorer LOGIN PASSWORD 'restorer-pw' CREATEDB CREATEROLE")
    before_dbs, before_roles = databases(target), roles(target)
    target_id = server_id("midway")
    set_source(server, target_id, f"postgresql://restorer:restorer-pw@127.0.0.1:{target.port}/postgres")
    assert p.validate(rp, into_server(target_id))["status"] == "Succeeded"  # it cannot know beforehand
    error = error_of(p.restore(rp, into_server(target_id)))
    assert error["code"] == "UserErrorRestoreFailed", error
    assert "Database 'shop'" in error["message"] and "dblink" in error["message"], error
    assert databases(target) == before_dbs and roles(target) == before_roles
    assert marks(target) == []

    # restore as files into a container that does not exist (by URL, and by ARM id)
    set_source(server, account_id(), azurite.connection_string)
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    for details in (
        {"url": f"{azurite.endpoint}/{missing}", "filePrefix": "nightly"},
        {"url": f"{azurite.endpoint}/{missing}", "filePrefix": "nightly",
         "targetResourceArmId": f"{account_id()}/blobServices/default/containers/{missing}"},
    ):  # fmt: skip
        op = p.validate(rp, files_target(details))
        assert op["status"] == "Failed" and op["error"]["code"] == "UserErrorContainerNotFound", op
        error = error_of(p.restore(rp, files_target(details)))
        assert error["code"] == "UserErrorContainerNotFound" and missing in error["message"], error
    with pytest.raises(urllib.error.HTTPError) as gone:  # not created by the attempts
        azurite._request("GET", f"/{missing}", {"restype": "container"})
    assert gone.value.code == 404


# -- (d) a subset of the databases, renamed, with and without a superuser ------------------------


def test_restore_criteria_restore_the_named_databases_only_under_their_new_names(
    server: Server, client: httpx.Client, make_pg: Callable[[], PostgresServer]
) -> None:
    source = make_pg()
    populate(source)
    expected = {db: tables(source, db) for db in DATABASES}
    p, rp = backed_up(server, client, source)

    # the source server mapped as a target too (restores beside its own databases)
    source_id = server_id("self")
    set_source(server, source_id, source.url("postgres"))
    # criteria that cannot be right whatever the point holds: a 400 at the request
    for criteria in (
        [item("crm", subItemPathPrefix=["sales"])],
        [item("crm", "twice"), item("shop", "twice")],
        [item("crm", "x" * 64)],
        [
            {
                "objectType": "RangeBasedItemLevelRestoreCriteria",
                "minMatchingValue": "a",
                "maxMatchingValue": "z",
            }
        ],
        [],
    ):
        for action in ("restore", "validateRestore"):
            r = p.post(action, rp, into_server(source_id, criteria))
            assert r.status_code == 400, (criteria, r.text)
            assert r.json()["error"]["code"] == "UserErrorInvalidRestoreCriteria", r.text
    # a database the point does not hold: a Failed validation and a Failed job
    op = p.validate(rp, into_server(source_id, [item("crm"), item("billing")]))
    assert op["status"] == "Failed" and op["error"]["code"] == "UserErrorRestoreItemNotFound", op
    assert "crm, inventory, postgres, shop" in op["error"]["message"]
    error = error_of(p.restore(rp, into_server(source_id, [item("crm", "crm_copy"), item("billing")])))
    assert error["code"] == "UserErrorRestoreItemNotFound", error
    assert databases(source) == {"postgres", *DATABASES}

    # into a fresh server as a user that is not a superuser (CREATEDB, CREATEROLE): crm and shop only
    fresh = make_pg()
    fresh.sql("postgres", "CREATE ROLE restorer LOGIN PASSWORD 'restorer-pw' CREATEDB CREATEROLE")
    fresh_id = server_id("subset")
    set_source(server, fresh_id, f"postgresql://restorer:restorer-pw@127.0.0.1:{fresh.port}/postgres")
    criteria = [item("crm"), item(f"{p.source_id}/databases/shop", "shop_restored")]
    assert p.validate(rp, into_server(fresh_id, criteria))["status"] == "Succeeded"
    job = p.restore(rp, into_server(fresh_id, criteria))
    assert job["status"] == "Completed", job
    details = job["extendedInfo"]["additionalDetails"]
    assert (
        details["RestoredDatabases"] == "crm,shop_restored"
        and details["RenamedDatabases"] == "shop->shop_restored"
    )
    assert databases(fresh) == {"postgres", "crm", "shop_restored"}
    assert tables(fresh, "crm") == expected["crm"] and tables(fresh, "shop_restored") == expected["shop"]
    # owners cannot be restored by a non-superuser: the restore user owns the objects; grants come back
    assert fresh.sql("crm", "SELECT tableowner FROM pg_tables WHERE tablename = 'leads'") == [("restorer",)]
    assert fresh.sql("crm", "SELECT has_table_privilege('app_reader', 'sales.leads', 'SELECT')") == [(True,)]
    assert {"app_group", "app_owner", "app_reader"} <= roles(fresh)
    assert fresh.sql(
        "postgres", "SELECT rolcanlogin, rolconnlimit FROM pg_roles WHERE rolname = 'app_reader'"
    ) == [(True, 7)]
    assert wait_for(lambda: not marks(fresh)), marks(fresh)

    # into the source server itself: inventory beside the original; its roles exist and stay as they are
    source.sql(
        "postgres", "ALTER ROLE app_reader CONNECTION LIMIT 2; COMMENT ON ROLE app_reader IS 'changed'"
    )
    source.sql("inventory", "DELETE FROM items WHERE id > 10")
    job = p.restore(rp, into_server(source_id, [item("/inventory", "inventory_before")]))
    assert job["status"] == "Completed", job
    assert (
        job["extendedInfo"]["additionalDetails"]["ExistingRoles"] == "app_group,app_owner,app_reader,postgres"
    )
    assert tables(source, "inventory_before") == expected["inventory"]
    assert tables(source, "inventory")["public.items"][0] == 10
    assert source.sql("postgres", "SELECT rolconnlimit, shobj_description(oid, 'pg_authid') FROM pg_roles "
                                  "WHERE rolname = 'app_reader'") == [(2, "changed")]  # fmt: skip
    assert databases(source) == {"postgres", *DATABASES, "inventory_before"}
    assert wait_for(lambda: not marks(source)), marks(source)

"""``dpvault sources`` (ARM ids mapped to connection strings) and restore as files into a blob
container (Azurite) through a storage account's mapping."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_protection import Protected, make_sample_database
from tests.integration.test_restore import _pg_restore, finish, restore, restore_request, table_state
from tests.support import API, SUB, PostgresServer, Server

FLEX = f"/subscriptions/{SUB}/resourceGroups/rg-pg/providers/Microsoft.DBforPostgreSQL/flexibleServers/pg-one"
AZURITE_ACCOUNT = "devstoreaccount1"


def account_id(name: str = AZURITE_ACCOUNT, sub: str = SUB) -> str:
    return (
        f"/subscriptions/{sub}/resourceGroups/rg-storage/providers/Microsoft.Storage/storageAccounts/{name}"
    )


def dpvault(
    data_dir: Path, *args: str, stdin: str = "", database_url: str | None = None
) -> subprocess.CompletedProcess[str]:
    """A ``dpvault`` command as a user runs it against a data dir."""
    cmd = [sys.executable, "-m", "dpvault", *args, "--data-dir", str(data_dir)]
    if database_url:
        cmd += ["--database-url", database_url]
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=dict(os.environ))


def set_source(server: Server, resource_id: str, value: str, *extra: str) -> None:
    server.cli("sources", "set", resource_id, *extra, input=value)


# -- the command ------------------------------------------------------------------------------


def test_sources_set_list_delete_round_trip_and_never_print_the_value(tmp_path: Path) -> None:
    password = "s3cret-" + uuid.uuid4().hex
    pg = f"Server=pg.example;Database=postgres;Port=5432;User Id=backup;Password={password};Ssl Mode=Require;"
    key = "k" * 20 + "=="
    storage = (
        f"DefaultEndpointsProtocol=https;AccountName=acct1;AccountKey={key};EndpointSuffix=core.windows.net"
    )
    tenant_b = str(uuid.uuid4())
    outputs: list[str] = []

    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        r = dpvault(tmp_path, *args, stdin=stdin)
        outputs.append(r.stdout + r.stderr)
        return r

    assert run("sources", "set", FLEX + "/", stdin=pg).returncode == 0
    assert run("sources", "set", account_id("acct1"), "--tenant", tenant_b, stdin=storage).returncode == 0
    assert run("secrets", "set", "https://kv1.vault.azure.net/secrets/pg", stdin=pg).returncode == 0
    listed = run("sources", "list").stdout
    assert FLEX.lower() in listed and account_id("acct1").lower() in listed and "kv1" not in listed
    assert f"tenant={tenant_b}" in listed
    assert account_id("acct1").lower() not in run("sources", "list", "--tenant", str(uuid.uuid4())).stdout
    secrets = run("secrets", "list").stdout
    assert "kv1.vault.azure.net" in secrets and "subscriptions" not in secrets
    # a mapping is not a secret: secrets commands do not touch it
    assert run("secrets", "set", FLEX, "--force", stdin=pg).returncode == 2
    assert run("secrets", "delete", FLEX).returncode == 1
    # delete is tenant-scoped too
    assert run("sources", "delete", account_id("acct1")).returncode == 1
    assert run("sources", "delete", account_id("acct1"), "--tenant", tenant_b).returncode == 0
    assert (
        run("sources", "delete", FLEX.upper().replace("/SUBSCRIPTIONS/", "/subscriptions/")).returncode == 0
    )
    assert run("sources", "list").stdout == ""
    assert "kv1.vault.azure.net" in run("secrets", "list").stdout
    for output in outputs:
        assert password not in output and key not in output


@pytest.mark.parametrize(
    "resource_id",
    [
        "",
        "flexibleServers/pg",
        "https://kv1.vault.azure.net/secrets/pg",
        f"/subscriptions/{SUB}/resourceGroups/rg",
        f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1",
        f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.DBforPostgreSQL/servers/pg1",
        f"/subscriptions/{SUB}/providers/Microsoft.DBforPostgreSQL/flexibleServers/pg1",
        account_id("Bad_Name!"),
        account_id("ab"),
    ],
)
def test_sources_set_refuses_what_is_not_a_mappable_arm_id(tmp_path: Path, resource_id: str) -> None:
    r = dpvault(tmp_path, "sources", "set", resource_id, stdin="host=h dbname=d user=u password=p")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "password=p" not in r.stderr
    assert dpvault(tmp_path, "sources", "list").stdout == ""


@pytest.mark.parametrize(
    ("resource_id", "value"),
    [
        (FLEX, ""),
        (FLEX, "not a connection string at all"),
        (FLEX, "postgresql://u:pw-xyz@h/db?passfile=/etc/shadow"),
        (account_id("acct1"), "AccountName=acct1;Password=pw-xyz"),
        (account_id("acct1"), "postgresql://u:pw-xyz@h/db"),
    ],
)
def test_sources_set_refuses_a_value_that_cannot_reach_the_source(
    tmp_path: Path, resource_id: str, value: str
) -> None:
    r = dpvault(tmp_path, "sources", "set", resource_id, stdin=value)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "pw-xyz" not in r.stdout + r.stderr
    assert dpvault(tmp_path, "sources", "list").stdout == ""


# -- restore as files into a blob container ---------------------------------------------------


@pytest.fixture
def protected(server: Server, client: httpx.Client, source_pg: PostgresServer) -> Protected:
    db = make_sample_database(source_pg, customers=300, orders=500)
    p = Protected(server, client, source_pg, db).create()
    assert p.put()["status"] == "Succeeded"
    return p


def files_target(details: dict[str, Any]) -> dict[str, Any]:
    return {
        "objectType": "RestoreFilesTargetInfo",
        "recoveryOption": "FailIfExists",
        "restoreLocation": "westus",
        "targetDetails": {"restoreTargetLocationType": "AzureBlobs", **details},
    }


def blob_service(azurite: Any) -> Any:
    from azure.storage.blob import BlobServiceClient

    return BlobServiceClient.from_connection_string(azurite.connection_string)


def download(azurite: Any, container: str, name: str) -> bytes | None:
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return bytes(blob_service(azurite).get_blob_client(container, name).download_blob().readall())
    except ResourceNotFoundError:
        return None


def names_in(azurite: Any, container: str) -> list[str]:
    return sorted(blob_service(azurite).get_container_client(container).list_blob_names())


def point_sha256(rp: dict[str, Any]) -> str:
    meta = rp["properties"]["recoveryPointDataStoresDetails"][0]["metaData"]
    return dict(x.split(":", 1) for x in meta.split(";"))["sha256"]


def test_restore_as_files_into_an_azurite_container_round_trips_through_pg_restore(
    make_server: Any, source_pg: PostgresServer, azurite: Any
) -> None:
    # a server of its own: "no mapping yet" must not depend on what other tests mapped
    server = make_server()
    with server.client() as client:
        p = Protected(
            server, client, source_pg, make_sample_database(source_pg, customers=300, orders=500)
        ).create()
        assert p.put()["status"] == "Succeeded"
        backed_up = table_state(source_pg, p.database)
        assert p.wait_job(p.backup())["status"] == "Completed"
        (rp,) = p.points()
        container = azurite.make_container(f"restores-{uuid.uuid4().hex[:8]}")
        url = f"{azurite.endpoint}/{container}"
        target = files_target({"url": url, "filePrefix": "shop-Backup"})

        # no mapping for the account yet: the request says so, naming the command
        r = restore(p, restore_request(rp["name"], target))
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert error["code"] == "UserErrorDatasourceNotMapped" and "dpvault sources set" in error["message"]
        # a mapping in another tenant is not this instance's
        set_source(server, account_id(), azurite.connection_string, "--tenant", str(uuid.uuid4()))
        r = restore(p, restore_request(rp["name"], target))
        assert r.status_code == 400 and r.json()["error"]["code"] == "UserErrorDatasourceNotMapped", r.text

        set_source(server, account_id(), azurite.connection_string)
        op, final = finish(p, restore(p, restore_request(rp["name"], target), validate=True))
        assert op["status"] == "Succeeded", op
        op, final = finish(p, restore(p, restore_request(rp["name"], target)))
        assert op["status"] == "Succeeded"
        job = p.wait_job(final.json()["jobId"])
        assert job["status"] == "Completed", job
        assert job["restoreType"] == "RestoreAsFiles"
        dump = download(azurite, container, "shop-Backup.dump")
        assert dump is not None
        expected = point_sha256(rp)
        assert hashlib.sha256(dump).hexdigest() == expected
        assert job["extendedInfo"]["additionalDetails"]["SHA256"] == expected
        assert (
            download(azurite, container, "shop-Backup.dump.sha256")
            == f"{expected}  shop-Backup.dump\n".encode()
        )

        # the blob is a pg_restore-able archive of the backed-up state
        source_pg.sql(p.database, "DELETE FROM orders WHERE id % 2 = 0")
        fresh = f"fromblob_{uuid.uuid4().hex[:8]}"
        source_pg.create_database(fresh)
        archive = server.data_dir / "downloaded.dump"
        archive.write_bytes(dump)
        subprocess.run(
            [_pg_restore(), "--no-owner", "--exit-on-error", "-h", str(source_pg.root), "-p", str(source_pg.port),
             "-U", "postgres", "-d", fresh, str(archive)],
            check=True, capture_output=True,
        )  # fmt: skip
        assert table_state(source_pg, fresh) == backed_up

        # FailIfExists: validateRestore and the job both refuse, the blob is untouched
        op, _ = finish(p, restore(p, restore_request(rp["name"], target), validate=True))
        assert op["status"] == "Failed" and op["error"]["code"] == "UserErrorTargetFileExists", op
        op, final = finish(p, restore(p, restore_request(rp["name"], target)))
        job = p.wait_job(final.json()["jobId"])
        assert job["status"] == "Failed" and job["errorDetails"][0]["code"] == "UserErrorTargetFileExists", (
            job
        )
        assert download(azurite, container, "shop-Backup.dump") == dump

        # the container's ARM id works as well as its URL
        arm = {
            "url": url,
            "filePrefix": "by-arm-id",
            "targetResourceArmId": f"{account_id()}/blobServices/default/containers/{container}",
        }
        op, final = finish(p, restore(p, restore_request(rp["name"], files_target(arm))))
        job = p.wait_job(final.json()["jobId"])
        assert job["status"] == "Completed", job
        assert hashlib.sha256(download(azurite, container, "by-arm-id.dump") or b"").hexdigest() == expected
        assert names_in(azurite, container) == sorted(
            ["shop-Backup.dump", "shop-Backup.dump.sha256", "by-arm-id.dump", "by-arm-id.dump.sha256"]
        )


def test_restore_into_a_missing_container_fails_the_job_and_writes_nothing(
    server: Server, protected: Protected, azurite: Any
) -> None:
    p = protected
    assert p.wait_job(p.backup())["status"] == "Completed"
    (rp,) = p.points()
    set_source(server, account_id(), azurite.connection_string)
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    target = files_target({"url": f"{azurite.endpoint}/{missing}", "filePrefix": "x"})
    op, _ = finish(p, restore(p, restore_request(rp["name"], target), validate=True))
    assert op["status"] == "Failed" and op["error"]["code"] == "UserErrorContainerNotFound", op
    op, final = finish(p, restore(p, restore_request(rp["name"], target)))
    job = p.wait_job(final.json()["jobId"])
    assert job["status"] == "Failed", job
    error = job["errorDetails"][0]
    assert (
        error["code"] == "UserErrorContainerNotFound"
        and missing in error["message"]
        and error["recommendedAction"]
    )
    # an account mapped with another account's connection string is refused, not written to
    set_source(server, account_id("otheraccount"), azurite.connection_string)
    target = files_target({"url": f"https://otheraccount.blob.core.windows.net/{missing}", "filePrefix": "x"})
    op, final = finish(p, restore(p, restore_request(rp["name"], target)))
    job = p.wait_job(final.json()["jobId"])
    assert job["status"] == "Failed" and job["errorDetails"][0]["code"] == "UserErrorDatasourceNotMapped", job


BAD_TARGETS: list[tuple[dict[str, Any], str]] = [
        ({"url": "https://teststorage.blob.core.windows.net/restoretest"}, "UserErrorDatasourceNotMapped"),
        ({"url": "https://teststorage.blob.core.windows.net/restoretest/sub/dir"}, "UserErrorInvalidRestoreTarget"),
        ({"url": "https://teststorage.blob.core.windows.net/"}, "UserErrorInvalidRestoreTarget"),
        ({"url": "https://teststorage.blob.core.windows.net/Bad_Container"}, "UserErrorInvalidRestoreTarget"),
        ({"url": "https://example.com/restoretest"}, "UserErrorInvalidRestoreTarget"),
        ({"url": "http://teststorage.blob.core.windows.net/restoretest"}, "UserErrorInvalidRestoreTarget"),
        ({"url": "https://teststorage.blob.core.windows.net/restoretest?sv=2020&sig=x"}, "UserErrorInvalidRestoreTarget"),
        ({"url": "http://127.0.0.1:10000/devstoreaccount1"}, "UserErrorInvalidRestoreTarget"),
        ({"url": "", "targetResourceArmId": f"/subscriptions/{SUB}/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/a1b"},
         "UserErrorInvalidRestoreTarget"),
        ({"url": "https://other.blob.core.windows.net/c1c",
          "targetResourceArmId": f"{account_id('acct1')}/blobServices/default/containers/c1c"}, "UserErrorInvalidRestoreTarget"),
        ({"url": "", "targetResourceArmId": f"{account_id('acct1')}/blobServices/default/containers/c1c"},
         "UserErrorDatasourceNotMapped"),
        ({"url": "https://teststorage.blob.core.windows.net/restoretest", "filePrefix": "../etc"}, "UserErrorInvalidFilePrefix"),
]  # fmt: skip


def test_bad_blob_targets_are_refused_at_the_request(protected: Protected) -> None:
    p = protected
    assert p.wait_job(p.backup())["status"] == "Completed"
    (rp,) = p.points()
    for details, code in BAD_TARGETS:
        target = files_target({"filePrefix": "x", **details})
        for validate in (False, True):
            r = restore(p, restore_request(rp["name"], target), validate=validate)
            assert r.status_code == 400, (details, r.text)
            error = r.json()["error"]
            assert error["code"] == code, (details, r.text)
            assert error["target"].endswith("restoreTargetInfo.targetDetails"), (details, r.text)


def test_a_restore_to_an_unmapped_account_in_a_vault_that_does_not_exist_is_a_404(
    protected: Protected,
) -> None:
    """The missing vault or instance is the first answer, before the target's mapping is looked at."""
    p = protected
    target = files_target(
        {"url": f"https://nomap{uuid.uuid4().hex[:8]}.blob.core.windows.net/restores", "filePrefix": "x"}
    )
    body = restore_request(str(uuid.uuid4()), target)
    for path in (p.env.vault_path.replace(p.env.vault, "no-such-vault"), p.env.vault_path):
        r = p.client.post(f"{path}/backupInstances/no-such-instance/restore?api-version={API}", json=body)
        assert r.status_code == 404, r.text
        assert r.json()["error"]["code"] == "ResourceNotFound", r.text


@contextlib.asynccontextmanager
async def blob_restorer(tmp_path: Path, mappings: dict[str, str]) -> AsyncIterator[Any]:
    """A ``BlobRestorer`` (what restore jobs into blob containers run) over the real local secret
    store, with ``mappings`` (storage account id -> connection string) set."""
    from cryptography.fernet import Fernet

    from dpvault.clock import Clock
    from dpvault.protection.credentials import Credentials
    from dpvault.protection.restore_blobs import BlobRestorer
    from dpvault.protection.sources import Sources
    from dpvault.secrets import SecretResolver
    from dpvault.secrets.local import LocalSecretStore
    from dpvault.services import Services
    from dpvault.settings import Settings
    from dpvault.store import Store

    store = await Store.open(f"sqlite:///{tmp_path / f'state-{uuid.uuid4().hex[:6]}.db'}")
    try:
        svc = Services(Settings(data_dir=tmp_path), store, Clock(), wake_worker=lambda: None)
        local = LocalSecretStore(store, Fernet(Fernet.generate_key()))
        for resource_id, value in mappings.items():
            await local.set(resource_id, value, tenant=svc.settings.tenant_id, now=1.0)
        yield BlobRestorer(None, Sources(Credentials(svc, SecretResolver([])), local))  # type: ignore[arg-type]
    finally:
        await store.close()


def test_a_given_up_blob_restore_removes_only_the_blobs_its_job_wrote(tmp_path: Path, azurite: Any) -> None:
    """``BlobRestorer.abandon`` (what a restore job that gave up runs) against Azurite: blobs whose
    metadata names the job go, everyone else's stay."""
    from dpvault.protection.restore_blobs import OWNER_KEY

    container = azurite.make_container(f"abandon-{uuid.uuid4().hex[:8]}")
    blobs = blob_service(azurite).get_container_client(container)
    mine, theirs = str(uuid.uuid4()), str(uuid.uuid4())
    owners = {"pre.dump": mine, "pre_shop.dump": mine, "pre_shop.dump.sha256": mine, "pre.dump.sha256": theirs,
              "other.dump": mine, "pre_crm.dump": theirs}  # fmt: skip
    for name, owner in owners.items():
        blobs.upload_blob(name, b"x", metadata={OWNER_KEY: owner})
    blobs.upload_blob("pre_plain.dump", b"x")  # no metadata: not a restore's

    async def run() -> int:
        async with blob_restorer(tmp_path, {account_id(): azurite.connection_string}) as restorer:
            details = {"url": f"{azurite.endpoint}/{container}", "filePrefix": "pre"}
            return await restorer.abandon(details, SUB, mine)

    assert asyncio.run(run()) == 3
    assert names_in(azurite, container) == ["other.dump", "pre.dump.sha256", "pre_crm.dump", "pre_plain.dump"]


def test_a_blob_target_that_refuses_answers_nothing_or_is_another_account_is_the_users_error(
    tmp_path: Path, azurite: Any
) -> None:
    """What validateRestore and a restore job meet at the target: a SAS that may not write (403:
    AccessDenied, not an outage to retry), an account that does not answer (Unreachable, retryable),
    a mapping that holds another account's connection string; and a blob that appears between the
    check and the put is refused by If-None-Match, not replaced."""
    from datetime import UTC, datetime, timedelta

    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    from dpvault.errors import UserError
    from dpvault.protection import restore_blobs
    from tests.objectstores import AZURITE_KEY, free_port

    container = azurite.make_container(f"refuse-{uuid.uuid4().hex[:8]}")
    sas = generate_container_sas(AZURITE_ACCOUNT, container, account_key=AZURITE_KEY,
                                 permission=ContainerSasPermissions(read=True, list=True),
                                 expiry=datetime.now(UTC) + timedelta(hours=1))  # fmt: skip
    read_only = f"BlobEndpoint={azurite.endpoint};SharedAccessSignature={sas}"
    dead = azurite.connection_string.replace(
        azurite.endpoint, f"http://127.0.0.1:{free_port()}/{AZURITE_ACCOUNT}"
    )
    other = azurite.connection_string.replace(AZURITE_ACCOUNT, "otheraccount")

    def in_group(group: str, name: str = AZURITE_ACCOUNT) -> str:
        return account_id(name).replace("/rg-storage/", f"/{group}/")

    # the same account reached three ways, and an id whose mapping holds another account's string
    ids = {"readonly": in_group("rg-readonly"), "dead": in_group("rg-dead"), "mixedup": account_id("mixedup"),
           "ok": account_id()}  # fmt: skip
    values = {"readonly": read_only, "dead": dead, "mixedup": other, "ok": azurite.connection_string}
    mappings = {ids[kind]: values[kind] for kind in ids}

    def details(kind: str) -> dict[str, str]:
        arm = f"{ids[kind]}/blobServices/default/containers/{container}"
        return {"targetResourceArmId": arm, "filePrefix": "nightly"}

    async def run() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        async with blob_restorer(tmp_path, mappings) as restorer:
            for kind in ("readonly", "dead", "mixedup"):
                with pytest.raises(UserError) as raised:
                    await restorer.abandon(details(kind), SUB, "job")  # listing works or is refused
                    await restorer.check(details(kind), SUB)
                    target = restore_blobs.parse_target(details(kind))
                    async with restorer._container(target, SUB) as client:
                        await restore_blobs._put(client, target, "nightly.dump", b"x", {})
                seen[kind] = raised.value
            # another writer's blob that appeared after the check: If-None-Match refuses the put
            target = restore_blobs.parse_target(details("ok"))
            async with restorer._container(target, SUB) as client:
                await client.upload_blob("nightly.dump", b"theirs")

                async def chunks() -> AsyncIterator[bytes]:
                    yield b"ours"

                with pytest.raises(UserError) as raised:
                    await restore_blobs._put(client, target, "nightly.dump", chunks(), {})
                seen["race"] = raised.value
        return seen

    seen = asyncio.run(run())
    assert seen["readonly"].code == "UserErrorStorageAccountAccessDenied" and not seen["readonly"].retryable
    assert seen["dead"].code == "UserErrorStorageAccountUnreachable" and seen["dead"].retryable
    assert seen["mixedup"].code == "UserErrorDatasourceNotMapped", seen["mixedup"]
    assert seen["race"].code == "UserErrorTargetFileExists" and "nightly.dump" in seen["race"].message
    assert (
        blob_service(azurite).get_blob_client(container, "nightly.dump").download_blob().readall()
        == b"theirs"
    )
    for error in seen.values():
        assert sas not in error.message and "AccountKey" not in error.message  # never the secret

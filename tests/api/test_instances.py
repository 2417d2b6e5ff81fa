"""Backup Instances - Create Or Update, and the rest of the instance lifecycle, over HTTPS."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.support import API, SUB, Env, PostgresServer, Server, instance_body, wait_operation


def test_seed_put_returns_201_with_the_seed_response_fields(env: Env) -> None:
    r = env.put_instance("testInstance1")
    assert r.status_code == 201, r.text
    body = r.json()
    # names and ids come from the URL, never the body (the seed's sample says harshitbi2)
    assert body["name"] == "testInstance1"
    assert body["id"] == env.instance_path("testInstance1")
    assert body["type"] == "Microsoft.DataProtection/backupVaults/backupInstances"
    assert body["tags"] == {"key1": "val1"}
    props = body["properties"]
    assert props["objectType"] == "BackupInstance"
    assert props["friendlyName"] == "harshitbi2"
    assert props["provisioningState"] == "Provisioning"
    assert props["protectionStatus"] == {"status": "ConfiguringProtection"}
    assert props["currentProtectionState"] == "ConfiguringProtection"
    assert props["policyInfo"]["policyId"] == env.policy_id
    assert props["policyInfo"]["policyVersion"]
    assert (
        props["policyInfo"]["policyParameters"]["dataStoreParametersList"][0]["dataStoreType"]
        == "OperationalStore"
    )
    # datasourceType echoed unchanged (the real service does not normalise to OssDB)
    assert props["dataSourceInfo"]["datasourceType"] == "Microsoft.DBforPostgreSQL/servers/databases"
    assert props["dataSourceSetInfo"]["resourceName"] == "viveksipgtest"
    creds = props["datasourceAuthCredentials"]
    assert creds["objectType"] == "SecretStoreBasedAuthCredentials"
    assert creds["secretStoreResource"] == {
        "secretStoreType": "AzureKeyVault",
        "uri": "https://samplevault.vault.azure.net/secrets/credentials",
        "value": None,
    }
    assert "validationType" not in props
    assert body["systemData"]["createdByType"] == "User"
    assert body["systemData"]["createdBy"] == "dpvault-user@dpvault.local"
    aao = r.headers["Azure-AsyncOperation"]
    assert aao.startswith(f"{env.client.base_url}{env.vault_path}/operationStatus/")
    assert aao.endswith(f"?api-version={API}")
    assert "/backupInstances/testInstance1/operationResults/" in r.headers["Location"]
    assert r.headers["Retry-After"] == "1"
    assert r.headers["x-ms-request-id"]
    assert r.headers["content-type"] == "application/json; charset=utf-8"

    op = wait_operation(env.client, aao)
    assert op["status"] == "Succeeded"
    assert op["name"] == aao.split("/operationStatus/")[1].split("?")[0]
    assert op["startTime"] and op["endTime"]
    got = env.client.get(f"{env.instance_path('testInstance1')}?api-version={API}").json()
    assert got["properties"]["provisioningState"] == "Succeeded"
    assert got["properties"]["protectionStatus"]["status"] == "ProtectionConfigured"
    assert got["properties"]["currentProtectionState"] == "ProtectionConfigured"
    final = env.client.get(r.headers["Location"])
    assert final.status_code == 200
    assert final.json()["name"] == "testInstance1"


def test_second_put_updates_with_200_and_names_match_case_insensitively(env: Env) -> None:
    env.create_instance("Bi1")
    body = instance_body(env.policy_id, tags={"k": "v2"})
    r = env.client.put(f"{env.vault_path}/backupinstances/bI1?api-version={API}", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["properties"]["provisioningState"] == "Updating"
    assert r.json()["name"] == "bI1"  # the casing last sent
    wait_operation(env.client, r.headers["Azure-AsyncOperation"])
    got = env.client.get(
        f"{env.vault_path.upper().replace('SUBSCRIPTIONS', 'subscriptions')}/BACKUPINSTANCES/bi1?api-version={API}"
    )
    assert got.status_code == 200, got.text
    assert got.json()["tags"] == {"k": "v2"}
    assert got.json()["name"] == "bI1"
    systemdata = got.json()["systemData"]
    assert systemdata["createdAt"] <= systemdata["lastModifiedAt"]


def test_list_pages_with_next_link(env: Env) -> None:
    names = [f"bi-{i}" for i in range(5)]
    for n in names:
        env.create_instance(n)
    seen: list[str] = []
    url: str | None = f"{env.vault_path}/backupInstances?api-version={API}&$top=2"
    pages = 0
    while url:
        r = env.client.get(url)
        assert r.status_code == 200, r.text
        page = r.json()
        seen += [v["name"] for v in page["value"]]
        url = page.get("nextLink")
        if url:
            assert (
                url.startswith("https://") and "api-version=2023-01-01" in url and "%24skipToken=" in url
            ) or "$skipToken=" in url
        pages += 1
    assert seen == names
    assert pages == 3


def test_empty_list_is_200_with_empty_value(env: Env) -> None:
    r = env.client.get(f"{env.vault_path}/backupInstances?api-version={API}")
    assert r.status_code == 200
    assert r.json() == {"value": []}


def test_delete_is_202_then_404_and_absent_delete_is_204(env: Env) -> None:
    env.create_instance("gone")
    r = env.client.delete(f"{env.instance_path('gone')}?api-version={API}")
    assert r.status_code == 202, r.text
    assert r.content == b""
    assert "/operationStatus/" in r.headers["Azure-AsyncOperation"]
    assert (
        f"/subscriptions/{SUB}/providers/Microsoft.DataProtection/locations/westus/operationResults/"
        in r.headers["Location"]
    )
    op = wait_operation(env.client, r.headers["Azure-AsyncOperation"])
    assert op["status"] == "Succeeded"
    final = env.client.get(r.headers["Location"])
    assert final.status_code == 204
    assert env.client.get(f"{env.instance_path('gone')}?api-version={API}").status_code == 404
    again = env.client.delete(f"{env.instance_path('gone')}?api-version={API}")
    assert again.status_code == 204
    assert again.content == b""


def test_validate_for_backup_is_an_lro_ending_in_operation_job_extended_info(
    env: Env, server: Server, source_pg: PostgresServer
) -> None:
    database = f"db_{uuid.uuid4().hex[:8]}"
    source_pg.create_database(database)
    uri = f"https://kvtest.vault.azure.net/secrets/{database.replace('_', '-')}"
    server.set_secret(uri, source_pg.ado(database))
    body = {"backupInstance": instance_body(env.policy_id, database=database, secret_uri=uri)["properties"]}
    r = env.client.post(f"{env.vault_path}/validateForBackup?api-version={API}", json=body)
    assert r.status_code == 202, r.text
    assert r.content == b""
    op = wait_operation(env.client, r.headers["Azure-AsyncOperation"])
    assert op["status"] == "Succeeded", op
    final = env.client.get(r.headers["Location"])
    assert final.status_code == 200
    assert final.json()["objectType"] == "OperationJobExtendedInfo"
    job = env.client.get(f"{env.vault_path}/backupJobs/{final.json()['jobId']}?api-version={API}")
    assert job.status_code == 200, job.text
    assert job.json()["properties"]["operation"] == "ValidateForBackup"
    assert job.json()["properties"]["status"] == "Completed"


def test_validate_for_backup_with_an_unknown_secret_fails_with_a_user_error(env: Env) -> None:
    body = {
        "backupInstance": instance_body(env.policy_id, secret_uri="https://kv.vault.azure.net/secrets/nope")[
            "properties"
        ]
    }
    r = env.client.post(f"{env.vault_path}/validateForBackup?api-version={API}", json=body)
    assert r.status_code == 202, r.text
    op = wait_operation(env.client, r.headers["Azure-AsyncOperation"])
    assert op["status"] == "Failed"
    assert op["error"]["code"] == "UserErrorSecretNotFound"
    final = env.client.get(r.headers["Location"])
    assert final.status_code == 400
    assert final.json()["error"]["code"] == "UserErrorSecretNotFound"


def test_operation_status_answers_at_all_three_scopes(env: Env, client: httpx.Client) -> None:
    r = env.put_instance("scoped")
    op_id = r.headers["Azure-AsyncOperation"].split("/operationStatus/")[1].split("?")[0]
    wait_operation(client, r.headers["Azure-AsyncOperation"])
    for path in (
        f"/subscriptions/{SUB}/providers/Microsoft.DataProtection/locations/westus/operationStatus/{op_id}",
        f"/subscriptions/{SUB}/resourceGroups/{env.rg}/providers/Microsoft.DataProtection/operationStatus/{op_id}",
        f"{env.vault_path}/operationStatus/{op_id}",
    ):
        got = client.get(f"{path}?api-version={API}")
        assert got.status_code == 200, (path, got.text)
        assert got.json()["id"] == path
        assert got.json()["status"] == "Succeeded"
    missing = client.get(f"{env.vault_path}/operationStatus/bm9wZQ==?api-version={API}")
    assert missing.status_code == 404


def test_a_burst_of_puts_is_configured_together_and_every_instance_ends_configured(
    make_server: Callable[..., Server],
) -> None:
    """PUTs accepted while no worker runs leave their jobs queued; a worker started then claims them
    in batches and configures each batch in one transaction. Every operation still ends Succeeded
    once, with its instance ProtectionConfigured."""
    first = make_server()
    with first.client() as client:
        env = Env(client).create()
    first.stop()
    server = make_server("--no-background", data_dir=first.data_dir, database_url=first.database_url)
    names = [f"burst-{i:02d}" for i in range(24)]
    with server.client() as client:
        env.client = client

        def put(name: str) -> str:
            r = client.put(f"{env.instance_path(name)}?api-version={API}", json=instance_body(env.policy_id))
            assert r.status_code == 201, r.text
            return r.headers["Azure-AsyncOperation"]

        with ThreadPoolExecutor(8) as pool:
            status_urls = list(pool.map(put, names))
        assert client.get(status_urls[0]).json()["status"] == "InProgress"  # no worker yet
        log_path = server.data_dir / "burst-worker.log"
        cmd = [
            sys.executable,
            "-m",
            "dpvault",
            "worker",
            "--data-dir",
            str(server.data_dir),
            "--log-level",
            "debug",
        ]
        if server.database_url:
            cmd += ["--database-url", server.database_url]
        with open(log_path, "ab") as log:
            worker = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            for url in status_urls:
                assert wait_operation(client, url)["status"] == "Succeeded"
        finally:
            worker.terminate()
            worker.wait(10)
        for name in names:
            props = client.get(f"{env.instance_path(name)}?api-version={API}").json()["properties"]
            assert props["provisioningState"] == "Succeeded", props
            assert props["currentProtectionState"] == "ProtectionConfigured", props
    batches = [line for line in log_path.read_text().splitlines() if "instances configured together" in line]
    assert batches, log_path.read_text()[-2000:]
    counts = [int(line.split("count=")[1].split()[0]) for line in batches]
    assert max(counts) > 1 and sum(counts) <= len(names)

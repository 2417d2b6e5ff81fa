"""The az CLI's and Terraform's backup-instance bodies for PostgreSQL flexible servers and blob
containers, sent as those clients send them to a real ``dpvault serve`` over HTTPS, polled the way
each client polls.

- az (``dataprotection`` extension 1.7.0, api-version 2025-07-01): ``backup-instance initialize``
  builds the body (``fixtures/az``, where each shape comes from is in ``fixtures/az/README.md``);
  ``backup-instance create`` POSTs it to validateForBackup, polls that, PUTs it, polls the PUT's
  Azure-AsyncOperation and makes the final GET on ``Location`` (ARMPolling, final-state-via location);
  the extension's own tests then wait for ``protectionStatus.status == ProtectionConfigured``.
- Terraform (azurerm, api-version 2025-09-01): ``BackupInstancesCreateOrUpdateThenPoll`` (go-azure-sdk's
  LRO poller on Azure-AsyncOperation, re-based on the configured endpoint), then a StateChangeConf
  that GETs the instance until it reaches the target state and fails on any state that is neither
  pending nor target (``fixtures/terraform/README.md``).

The clients wait ``Retry-After`` (or a minute, for Terraform's StateChangeConf) between polls; these
tests poll every 0.1 s, which changes how often they look, not what they may see.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.integration.test_sources import AZURITE_ACCOUNT, set_source
from tests.support import SUB, PostgresServer, Server, vault_body

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).resolve().parent / "fixtures"
AZ_API = "2025-07-01"  # dataprotection extension 1.7.0 (its recordings of 2025-11-04)
TF_API = "2025-09-01"  # azurerm's dataprotection resources (go-azure-sdk dataprotection/2025-09-01)
FLEX_TYPE = "Microsoft.DBforPostgreSQL/flexibleServers"
BLOB_TYPE = "Microsoft.Storage/storageAccounts/blobServices"
LOCATION = "westus"
POLL = 0.1
# go-azure-sdk's request headers (sdk/client/resourcemanager); az sends plain application/json
TF_HEADERS = {"Accept": "application/json; charset=utf-8; IEEE754Compatible=false"}
# the statuses go-azure-sdk's LRO poller knows (sdk/client/resourcemanager/poller_lro.go); any other
# value fails the apply with "`result.Status` was nil/empty"
TF_RUNNING = {
    "inprogress",
    "accepted",
    "creating",
    "running",
    "updating",
    "provisioning",
    "created",
    "pending",
}
TF_DONE = {"succeeded", "failed", "canceled", "cancelled"}


# -- fixtures and bodies ----------------------------------------------------------------------


def fill(template: Any, values: dict[str, Any]) -> Any:
    """The fixture with its ``{placeholder}`` strings replaced; a value that is a whole placeholder
    may be any JSON value (the containers list), one inside a longer string must be a string."""
    if isinstance(template, dict):
        return {k: fill(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [fill(v, values) for v in template]
    if isinstance(template, str):
        if template.startswith("{") and template.endswith("}") and template[1:-1] in values:
            return values[template[1:-1]]
        for key, value in values.items():
            template = template.replace("{" + key + "}", str(value))
    return template


def fixture(path: str, /, **values: Any) -> Any:
    body = fill(json.loads((FIXTURES / path).read_text()), values)
    left = [p for p in ("{serverId}", "{accountId}", "{policyId}", "{containers}") if p in json.dumps(body)]
    assert not left, f"{path}: placeholders left unfilled: {left}"
    return body


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def flex_id(rg: str, name: str) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/{rg}/providers/{FLEX_TYPE}/{name}"


def account_id(rg: str) -> str:
    """Azurite's one account (devstoreaccount1) under a resource group of the test's own: a mapping
    names the ARM id, and an account's connection string must name the same account."""
    return f"/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.Storage/storageAccounts/{AZURITE_ACCOUNT}"


@pytest.fixture(scope="module")
def flex_pg() -> Iterator[PostgresServer]:
    """A server of the module's own (validation and a whole-server backup read every database on
    it, and other tests create and drop databases on the shared one). Not under pytest's tmp dir,
    which is private to root while the server runs as ``postgres``."""
    root = Path(tempfile.mkdtemp(prefix="dpvault-azpg-"))
    pg = PostgresServer(root)
    pg.start()
    try:
        for db in ("billing", "catalog"):
            pg.sql("postgres", f'CREATE DATABASE "{db}"')
            pg.sql(db, "CREATE TABLE items (id int PRIMARY KEY, name text)")
            pg.sql(db, f"INSERT INTO items SELECT g, '{db}-' || g FROM generate_series(1, 50) g")
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


class Vault:
    """A resource group and vault of the test's own, and a way to add policies to it."""

    def __init__(self, client: httpx.Client, api: str) -> None:
        self.client = client
        self.api = api
        self.rg = unique("rg-clients")
        self.name = unique("vault")
        self.path = f"/subscriptions/{SUB}/resourceGroups/{self.rg}/providers/Microsoft.DataProtection/backupVaults/{self.name}"
        r = client.put(f"{self.path}?api-version={api}", json=vault_body(LOCATION))
        assert r.status_code == 201, r.text
        assert az_poll(client, r)[0]["status"] == "Succeeded"

    def policy(self, name: str, template: dict[str, Any]) -> str:
        """``az dataprotection backup-policy create --policy <template>``: the template as the
        body's ``properties``, verbatim (the extension's Create sends it as a free-form dict)."""
        r = self.client.put(
            f"{self.path}/backupPolicies/{name}?api-version={self.api}", json={"properties": template}
        )
        assert r.status_code == 200, r.text
        assert r.json()["properties"]["datasourceTypes"] == template["datasourceTypes"]
        return str(r.json()["id"])

    def instance(self, name: str) -> str:
        return f"{self.path}/backupInstances/{name}"


# -- how the clients poll ---------------------------------------------------------------------


def az_poll(client: httpx.Client, response: httpx.Response) -> tuple[dict[str, Any], httpx.Response | None]:
    """az's LRO: Azure-AsyncOperation until a terminal status (case-insensitive), then, if it
    succeeded, the final GET on ``Location`` (a PUT without one: the PUT's URL). Returns the last
    status body and the final response."""
    assert response.status_code in (200, 201, 202), response.text
    status_url = response.headers["Azure-AsyncOperation"]
    deadline = time.monotonic() + 120
    while True:
        r = client.get(status_url)
        assert r.status_code == 200, r.text
        status = r.json()
        assert status.get("status"), status  # ARMPolling: a status body without status is an error
        if status["status"].lower() in ("succeeded", "failed", "canceled"):
            break
        assert time.monotonic() < deadline, f"operation still {status['status']}"
        time.sleep(POLL)
    if status["status"].lower() != "succeeded":
        return status, None
    final = response.headers.get("Location") or str(response.request.url)
    return status, client.get(final)


def tf_poll(client: httpx.Client, response: httpx.Response) -> dict[str, Any]:
    """go-azure-sdk's ``...ThenPoll`` (sdk/client/resourcemanager/poller.go, PollerFromResponse): a
    PUT answered 201/202 with Azure-AsyncOperation (or a DELETE answered 201/202) is polled on that
    URL, which must be absolute and of which only the path and query are used; every answer must be
    JSON with a status the poller knows. A PUT answered 200/201 with JSON and no polling URL is
    polled on the resource's ``properties.provisioningState`` instead; a DELETE answered 200/204 by
    GETs until 404. No final GET. Returns the last body read (``{}`` for a finished DELETE)."""
    method = response.request.method
    polling = response.headers.get("Azure-AsyncOperation") or response.headers.get("Location")
    deadline = time.monotonic() + 120
    if response.status_code in (201, 202) and polling:
        url = urlsplit(polling)
        assert url.scheme == "https" and url.netloc, f"URL was not absolute: {polling}"
        assert url.netloc == urlsplit(str(response.request.url)).netloc, "client endpoint is different"
        while True:
            r = client.get(f"{url.path}?{url.query}", headers=TF_HEADERS)
            assert r.status_code in (200, 201, 202, 204), r.text
            if r.status_code == 202 or (r.status_code == 200 and not r.content):
                body: dict[str, Any] = {"status": "InProgress" if r.status_code == 202 else "Succeeded"}
            else:
                assert "application/json" in r.headers["Content-Type"], r.headers
                body = r.json()
            status = str(body.get("status") or body.get("properties", {}).get("provisioningState") or "")
            assert status.lower() in TF_RUNNING | TF_DONE, f"`result.Status` was nil/empty or unknown: {body}"
            if status.lower() in TF_DONE:
                return body
            assert time.monotonic() < deadline, f"operation still {status}"
            time.sleep(POLL)
    if method == "PUT" and response.status_code in (200, 201):
        assert "application/json" in response.headers["Content-Type"], response.headers
        resource = urlsplit(str(response.request.url))
        while True:  # provisioningStatePoller: GET the resource until a terminal provisioningState
            r = client.get(f"{resource.path}?{resource.query}", headers=TF_HEADERS)
            assert r.status_code == 200, r.text
            state = str(r.json()["properties"].get("provisioningState", ""))
            if state.lower() in ("succeeded", "failed", "canceled", "cancelled"):
                return {"status": state, "resource": r.json()}
            assert time.monotonic() < deadline, f"provisioningState still {state}"
            time.sleep(POLL)
    if method == "DELETE" and response.status_code in (200, 204):
        resource = urlsplit(str(response.request.url))
        while client.get(f"{resource.path}?{resource.query}", headers=TF_HEADERS).status_code != 404:
            assert time.monotonic() < deadline, "still there"
            time.sleep(POLL)
        return {}
    raise AssertionError(
        f"no applicable pollers were found for the response: {response.status_code} {response.text}"
    )


def tf_wait_state(
    client: httpx.Client, path: str, state_of: Callable[[dict[str, Any]], str], pending: set[str], target: str
) -> tuple[list[str], dict[str, Any]]:
    """pluginsdk.StateChangeConf: GET the instance until its state is ``target``; a state that is
    neither pending nor target ends the apply ("unexpected state"). Returns the states seen."""
    seen: list[str] = []
    deadline = time.monotonic() + 120
    while True:
        r = client.get(f"{path}?api-version={TF_API}", headers=TF_HEADERS)
        assert r.status_code == 200, r.text
        state = state_of(r.json())
        seen.append(state)
        if state == target:
            return seen, r.json()
        assert state in pending, (
            f"unexpected state '{state}', wanted target '{target}'. last error: {r.json()}"
        )
        assert time.monotonic() < deadline, f"timeout while waiting for state to become '{target}': {seen}"
        time.sleep(POLL)


def current_protection_state(body: dict[str, Any]) -> str:
    return str(body["properties"].get("currentProtectionState", ""))


def protection_status(body: dict[str, Any]) -> str:
    return str(body["properties"]["protectionStatus"]["status"])


def az_create(client: httpx.Client, vault: Vault, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """``az dataprotection backup-instance create --backup-instance <initialize's output>``:
    validateForBackup (polled, then its final GET), the PUT (polled, then its final GET), then the
    extension's ``backup-instance wait --custom protectionStatus.status=='ProtectionConfigured'``."""
    validate = {"backupInstance": body["properties"]}
    r = client.post(f"{vault.path}/validateForBackup?api-version={AZ_API}", json=validate)
    assert r.status_code == 202, r.text
    status, final = az_poll(client, r)
    assert status["status"] == "Succeeded", status
    assert final is not None and final.status_code == 200, final
    assert final.json()["objectType"] == "OperationJobExtendedInfo"

    r = client.put(f"{vault.instance(name)}?api-version={AZ_API}", json=body)
    assert r.status_code == 201, r.text
    status, final = az_poll(client, r)
    assert status["status"] == "Succeeded", status
    assert final is not None and final.status_code == 200, final.text if final else status
    created = final.json()
    assert created["name"] == name
    assert created["properties"]["provisioningState"] == "Succeeded", created

    deadline = time.monotonic() + 120
    while True:
        got = client.get(f"{vault.instance(name)}?api-version={AZ_API}").json()
        if protection_status(got) == "ProtectionConfigured":
            break
        assert protection_status(got) == "ConfiguringProtection", got
        assert time.monotonic() < deadline, got
        time.sleep(POLL)
    return got


def az_adhoc_backup(client: httpx.Client, vault: Vault, name: str, rule: str) -> dict[str, Any]:
    """``az dataprotection backup-instance adhoc-backup --rule-name <rule> --retention-tag-override
    Default``, then the job to its end (``job show`` until it is no longer InProgress)."""
    r = client.post(
        f"{vault.instance(name)}/backup?api-version={AZ_API}",
        json={"backupRuleOptions": {"ruleName": rule, "triggerOption": {"retentionTagOverride": "Default"}}},
    )
    status, final = az_poll(client, r)
    assert status["status"] == "Succeeded", status
    assert final is not None and final.status_code == 200, final
    job_id = final.json()["jobId"]
    deadline = time.monotonic() + 120
    while True:
        job = client.get(f"{vault.path}/backupJobs/{job_id}?api-version={AZ_API}").json()["properties"]
        if job["status"] not in ("InProgress", "Started"):
            return dict(job)
        assert time.monotonic() < deadline, job
        time.sleep(0.2)


def make_containers(azurite: Any, *names: str) -> None:
    """Containers in Azurite (Put Container), each with a blob (obstore), as a user's setup would
    leave them."""
    import obstore
    from obstore.store import AzureStore

    key = azurite.connection_string.split("AccountKey=")[1].split(";")[0]
    for name in names:
        azurite.make_container(name)
        store = AzureStore(name, config={"account_name": AZURITE_ACCOUNT, "account_key": key,
                                         "endpoint": azurite.endpoint}, client_options={"allow_http": True})  # fmt: skip
        obstore.put(store, "hello.txt", f"hello from {name}".encode())


# -- az ---------------------------------------------------------------------------------------


def test_az_flexible_server_body_is_validated_created_protected_and_backed_up(
    server: Server, client: httpx.Client, flex_pg: PostgresServer
) -> None:
    vault = Vault(client, AZ_API)
    template = json.loads(
        (FIXTURES / "az" / "policy-AzureDatabaseForPostgreSQLFlexibleServer.json").read_text()
    )
    policy_id = vault.policy("OssFlexiblePolicy1", template)
    server_name = unique("pgflex")
    server_id = flex_id(unique("rg-pg"), server_name)
    body = fixture(
        "az/backup-instance-AzureDatabaseForPostgreSQLFlexibleServer.json",
        serverId=server_id, serverName=server_name, location=LOCATION, policyId=policy_id,
    )  # fmt: skip
    assert "datasourceAuthCredentials" not in body["properties"]  # az sends none for this type
    name = f"{server_name}-{server_name}-{uuid.uuid1()}"  # initialize's name for a non-proxy resource

    # before `dpvault sources set`: create stops at validateForBackup, naming the command
    r = client.post(
        f"{vault.path}/validateForBackup?api-version={AZ_API}", json={"backupInstance": body["properties"]}
    )
    status, _ = az_poll(client, r)
    assert status["status"] == "Failed" and status["error"]["code"] == "UserErrorDatasourceNotMapped", status
    assert "dpvault sources set" in status["error"]["message"]

    set_source(server, server_id, flex_pg.url("postgres"))
    got = az_create(client, vault, name, body)
    props = got["properties"]
    assert props["currentProtectionState"] == "ProtectionConfigured"
    assert "protectionErrorDetails" not in props, props  # dpvault backs this datasource up
    assert props["dataSourceInfo"]["resourceID"] == server_id
    assert props["dataSourceInfo"]["resourceUri"] == server_id
    assert props["dataSourceInfo"]["datasourceType"] == FLEX_TYPE
    assert props["friendlyName"] == server_name
    assert props["policyInfo"]["policyId"].lower() == policy_id.lower()

    job = az_adhoc_backup(client, vault, name, "BackupWeekly")
    assert job["status"] == "Completed", job
    points = client.get(f"{vault.instance(name)}/recoveryPoints?api-version={AZ_API}").json()["value"]
    assert len(points) == 1, points
    meta = points[0]["properties"]["recoveryPointDataStoresDetails"][0]["metaData"]
    assert dict(x.split(":", 1) for x in meta.split(";"))["databases"] == "billing,catalog,postgres"


def test_az_blob_body_with_vaulted_containers_is_validated_created_and_protected(
    server: Server, client: httpx.Client, azurite: Any
) -> None:
    vault = Vault(client, AZ_API)
    template = json.loads((FIXTURES / "az" / "policy-AzureBlob.json").read_text())
    policy_id = vault.policy("BlobPolicy1", template)
    containers = [unique("invoices"), unique("images")]
    make_containers(azurite, *containers)
    storage_id = account_id(unique("rg-storage"))
    body = fixture(
        "az/backup-instance-AzureBlob.json",
        accountId=storage_id, accountName=AZURITE_ACCOUNT, location=LOCATION, policyId=policy_id,
        containers=containers,
    )  # fmt: skip
    params = body["properties"]["policyInfo"]["policyParameters"]["backupDatasourceParametersList"]
    assert params == [{"objectType": "BlobBackupDatasourceParameters", "containersList": containers}]
    name = f"{AZURITE_ACCOUNT}-{AZURITE_ACCOUNT}-{uuid.uuid1()}"

    set_source(server, storage_id, azurite.connection_string)
    got = az_create(client, vault, name, body)
    props = got["properties"]
    assert props["currentProtectionState"] == "ProtectionConfigured"
    assert "protectionErrorDetails" not in props, props  # backed up, not only recorded
    assert props["dataSourceSetInfo"]["resourceID"] == storage_id
    listed = props["policyInfo"]["policyParameters"]["backupDatasourceParametersList"]
    assert listed[0]["containersList"] == containers

    job = az_adhoc_backup(client, vault, name, "BackupDaily")
    assert job["status"] == "Completed", job
    points = client.get(f"{vault.instance(name)}/recoveryPoints?api-version={AZ_API}").json()["value"]
    assert len(points) == 1, points


# -- Terraform --------------------------------------------------------------------------------


def test_terraform_postgresql_flexible_server_create_update_and_destroy(
    server: Server, client: httpx.Client, flex_pg: PostgresServer
) -> None:
    vault = Vault(client, TF_API)
    template = json.loads(
        (FIXTURES / "az" / "policy-AzureDatabaseForPostgreSQLFlexibleServer.json").read_text()
    )
    weekly = vault.policy("weekly", template)
    later = json.loads(json.dumps(template))
    later["policyRules"][0]["trigger"]["schedule"]["repeatingTimeIntervals"] = [
        "R/2021-08-15T18:00:00+00:00/P1W"
    ]
    evening = vault.policy("evening", later)
    server_name = unique("tfpg")
    server_id = flex_id(unique("rg-pg"), server_name)
    set_source(server, server_id, flex_pg.url("postgres"))
    name = unique("tf-pgflex")
    path = vault.instance(name)

    # create: the import check, the PUT and its LRO, then the wait on currentProtectionState
    assert client.get(f"{path}?api-version={TF_API}", headers=TF_HEADERS).status_code == 404
    body = fixture(
        "terraform/backup-instance-postgresql-flexible-server.json",
        serverId=server_id, serverName=server_name, name=name, location=LOCATION, policyId=weekly,
    )  # fmt: skip
    r = client.put(f"{path}?api-version={TF_API}", json=body, headers=TF_HEADERS)
    assert r.status_code == 201, r.text
    assert r.json()["properties"]["currentProtectionState"] == "ConfiguringProtection"
    assert tf_poll(client, r)["status"] == "Succeeded"
    seen, got = tf_wait_state(
        client, path, current_protection_state, {"ConfiguringProtection"}, "ProtectionConfigured"
    )
    assert set(seen) <= {"ConfiguringProtection", "ProtectionConfigured"}, seen
    assert got["properties"]["objectType"] == "BackupInstance"  # Terraform sent ""
    assert got["properties"]["friendlyName"] == name
    assert "protectionErrorDetails" not in got["properties"], got

    # update backup_policy_id: Terraform PUTs the instance it read, read-only fields and all
    existing = got
    existing["properties"].setdefault("datasourceAuthCredentials", None)
    existing["properties"]["policyInfo"]["policyId"] = evening
    r = client.put(f"{path}?api-version={TF_API}", json=existing, headers=TF_HEADERS)
    assert r.status_code == 200, r.text
    assert r.json()["properties"]["currentProtectionState"] == "UpdatingProtection"
    assert "Azure-AsyncOperation" in r.headers  # a 200: go-azure-sdk polls provisioningState instead
    assert tf_poll(client, r)["status"] == "Succeeded"
    seen, got = tf_wait_state(
        client, path, current_protection_state, {"UpdatingProtection"}, "ProtectionConfigured"
    )
    assert set(seen) <= {"UpdatingProtection", "ProtectionConfigured"}, seen
    assert got["properties"]["policyInfo"]["policyId"].lower() == evening.lower()

    # refresh (Read): protection_state, and the same server id
    read = client.get(f"{path}?api-version={TF_API}", headers=TF_HEADERS).json()["properties"]
    assert read["currentProtectionState"] == "ProtectionConfigured"
    assert read["dataSourceInfo"]["resourceID"] == server_id

    # destroy: DELETE and its LRO, then the instance is gone
    r = client.delete(f"{path}?api-version={TF_API}", headers=TF_HEADERS)
    assert r.status_code == 202, r.text
    assert tf_poll(client, r)["status"] == "Succeeded"
    assert client.get(f"{path}?api-version={TF_API}", headers=TF_HEADERS).status_code == 404


def test_terraform_blob_storage_create_and_update_of_the_containers(
    server: Server, client: httpx.Client, azurite: Any
) -> None:
    vault = Vault(client, TF_API)
    policy_id = vault.policy("blob", json.loads((FIXTURES / "az" / "policy-AzureBlob.json").read_text()))
    first, second = unique("tf-docs"), unique("tf-logs")
    make_containers(azurite, first, second)
    storage_id = account_id(unique("rg-storage"))
    set_source(server, storage_id, azurite.connection_string)
    name = unique("tf-blob")
    path = vault.instance(name)

    def body(containers: list[str]) -> dict[str, Any]:
        return fixture(  # type: ignore[no-any-return]
            "terraform/backup-instance-blob-storage.json",
            accountId=storage_id, accountName=AZURITE_ACCOUNT, name=name, location=LOCATION,
            policyId=policy_id, containers=containers,
        )  # fmt: skip

    pending = {"ConfiguringProtection", "UpdatingProtection"}
    assert client.get(f"{path}?api-version={TF_API}", headers=TF_HEADERS).status_code == 404
    r = client.put(f"{path}?api-version={TF_API}", json=body([first]), headers=TF_HEADERS)
    assert r.status_code == 201, r.text
    assert tf_poll(client, r)["status"] == "Succeeded"
    seen, got = tf_wait_state(client, path, protection_status, pending, "ProtectionConfigured")
    assert set(seen) <= pending | {"ProtectionConfigured"}, seen
    assert "protectionErrorDetails" not in got["properties"], got  # backed up, not only recorded
    listed = got["properties"]["policyInfo"]["policyParameters"]["backupDatasourceParametersList"]
    assert listed == [{"objectType": "BlobBackupDatasourceParameters", "containersList": [first]}]

    # storage_account_container_names gains a container: the same resource function, a new body
    r = client.put(f"{path}?api-version={TF_API}", json=body([first, second]), headers=TF_HEADERS)
    assert r.status_code == 200, r.text
    assert tf_poll(client, r)["status"] == "Succeeded"
    seen, got = tf_wait_state(client, path, protection_status, pending, "ProtectionConfigured")
    assert set(seen) <= pending | {"ProtectionConfigured"}, seen
    assert "protectionErrorDetails" not in got["properties"], got
    listed = got["properties"]["policyInfo"]["policyParameters"]["backupDatasourceParametersList"]
    assert listed[0]["containersList"] == [first, second]


@pytest.mark.parametrize("case", ["unmapped-account", "missing-container"])
def test_terraform_blob_storage_that_cannot_be_protected_fails_the_lro(
    server: Server, client: httpx.Client, azurite: Any, case: str
) -> None:
    """What `terraform apply` reports: the PUT's LRO ends Failed and go-azure-sdk shows its error."""
    vault = Vault(client, TF_API)
    policy_id = vault.policy("blob", json.loads((FIXTURES / "az" / "policy-AzureBlob.json").read_text()))
    storage_id = account_id(unique("rg-storage"))
    container = unique("tf-absent")
    if case == "missing-container":
        set_source(server, storage_id, azurite.connection_string)
    else:
        make_containers(azurite, container)  # the container exists; nobody mapped this account id
    name = unique("tf-blob")
    body = fixture(
        "terraform/backup-instance-blob-storage.json",
        accountId=storage_id, accountName=AZURITE_ACCOUNT, name=name, location=LOCATION, policyId=policy_id,
        containers=[container],
    )  # fmt: skip
    r = client.put(f"{vault.instance(name)}?api-version={TF_API}", json=body, headers=TF_HEADERS)
    assert r.status_code == 201, r.text
    status = tf_poll(client, r)
    expected = "UserErrorDatasourceNotMapped" if case == "unmapped-account" else "UserErrorContainerNotFound"
    assert status["status"] == "Failed" and status["error"]["code"] == expected, status
    assert (storage_id if case == "unmapped-account" else container) in status["error"]["message"], status
    got = client.get(f"{vault.instance(name)}?api-version={TF_API}", headers=TF_HEADERS).json()["properties"]
    assert got["currentProtectionState"] == "ConfiguringProtectionFailed", got
    assert got["protectionErrorDetails"]["code"] == expected, got

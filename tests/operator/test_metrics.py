"""``/metrics`` after a real backup and a failed one, parsed with prometheus-client's own parser;
who may see which series; ``/healthz`` and ``/readyz``, which turns not-ready when the state
database's server stops."""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.test_protection import Protected, make_sample_database
from tests.support import API, PostgresServer, Server, vault_body, wait_operation

OTHER_TENANT = "3c9d2b10-0000-4000-8000-0000000000aa"


def scrape(server: Server, token: str | None = None) -> dict[str, list[Any]]:
    r = httpx.get(
        f"{server.base}/metrics", verify=server.ssl_context(),
        headers={"Authorization": f"Bearer {token or server.token()}"},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {f.name: f.samples for f in text_string_to_metric_families(r.text)}


def value(samples: list[Any], name: str, **labels: str) -> float | None:
    found = [
        s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    return found[0] if found else None


def test_metrics_after_a_backup_and_a_failed_backup(
    server: Server, client: httpx.Client, source_pg: PostgresServer
) -> None:
    db = make_sample_database(source_pg, customers=30, orders=30)
    p = Protected(server, client, source_pg, db).create()
    assert p.put()["status"] == "Succeeded"
    ok = p.wait_job(p.backup())
    assert ok["status"] == "Completed"
    server.set_secret(p.uri, source_pg.ado(db, password="wrong-password"))
    bad = p.wait_job(p.backup())
    assert bad["status"] == "Failed"
    assert len(p.points()) == 1

    m = scrape(server)
    scope = {"vault": p.env.vault.lower(), "resource_group": p.env.rg.lower()}
    instance = {**scope, "instance": p.name.lower()}
    jobs = m["dpvault_backup_jobs"]
    assert value(jobs, "dpvault_backup_jobs", operation="Backup", status="Completed", **scope) == 1
    assert value(jobs, "dpvault_backup_jobs", operation="Backup", status="Failed", **scope) == 1
    durations = m["dpvault_backup_job_duration_seconds"]
    completed = value(
        durations, "dpvault_backup_job_duration_seconds_count", operation="Backup", status="Completed"
    )
    assert completed is not None and completed >= 1
    inf = value(
        durations,
        "dpvault_backup_job_duration_seconds_bucket",
        operation="Backup",
        status="Failed",
        le="+Inf",
    )
    assert inf is not None and inf >= 1
    assert value(m["dpvault_recovery_points"], "dpvault_recovery_points", **instance) == 1
    backed = value(m["dpvault_backed_up_bytes"], "dpvault_backed_up_bytes_total", **instance)
    stored = value(m["dpvault_recovery_point_bytes"], "dpvault_recovery_point_bytes", **instance)
    assert backed is not None and backed > 0 and stored == backed
    assert backed == ok["extendedInfo"]["dataTransferredInBytes"]
    assert value(m["dpvault_vault_stored_bytes"], "dpvault_vault_stored_bytes", **scope) == stored
    last = value(
        m["dpvault_last_successful_backup_timestamp_seconds"], "dpvault_last_successful_backup_timestamp_seconds",
        **instance,
    )  # fmt: skip
    assert last is not None and abs(last - time.time()) < 600
    # vault format 2: what the vault's packs take (compressed and deduplicated), and logical / physical
    physical = value(m["dpvault_vault_physical_bytes"], "dpvault_vault_physical_bytes", **scope)
    ratio = value(m["dpvault_vault_deduplication_ratio"], "dpvault_vault_deduplication_ratio", **scope)
    assert physical is not None and 0 < physical
    assert ratio is not None and abs(ratio - stored / physical) < 1e-6
    # process series for the server's own tenant
    backup_route = (
        "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.DataProtection"
        "/backupVaults/{vaultName}/backupInstances/{backupInstanceName}/backup"
    )
    posts = value(
        m["dpvault_http_requests"],
        "dpvault_http_requests_total",
        route=backup_route,
        method="POST",
        status="202",
    )
    assert posts is not None and posts >= 2
    assert "dpvault_job_queue_depth" in m and "dpvault_job_lease_expiries" in m


def test_another_tenant_sees_only_its_own_series(server: Server, client: httpx.Client) -> None:
    token = server.token("--tenant", OTHER_TENANT)
    sub = str(uuid.uuid4())
    name = f"v-{uuid.uuid4().hex[:8]}"
    with server.client(token) as other:
        r = other.put(
            f"/subscriptions/{sub}/resourceGroups/rg-m/providers/Microsoft.DataProtection/backupVaults/{name}?api-version={API}",
            json=vault_body(),
        )
        assert r.status_code == 201, r.text
        wait_operation(other, r.headers["Azure-AsyncOperation"])
    text = httpx.get(
        f"{server.base}/metrics", verify=server.ssl_context(), headers={"Authorization": f"Bearer {token}"}
    ).text
    families = {f.name: f.samples for f in text_string_to_metric_families(text)}
    subs = {
        s.labels["subscription"]
        for samples in families.values()
        for s in samples
        if "subscription" in s.labels
    }
    assert subs <= {sub}, subs
    assert "dpvault_http_requests" not in families and "dpvault_job_queue_depth" not in families
    mine = scrape(server)
    assert not any(s.labels.get("subscription") == sub for samples in mine.values() for s in samples)
    anonymous = httpx.get(f"{server.base}/metrics", verify=server.ssl_context())
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "AuthenticationFailed"


def test_healthz_and_readyz_answer_without_a_token(server: Server) -> None:
    for path in ("/healthz", "/readyz"):
        r = httpx.get(f"{server.base}{path}", verify=server.ssl_context())
        assert r.status_code == 200, r.text
    assert httpx.get(f"{server.base}/readyz", verify=server.ssl_context()).json() == {
        "status": "ready", "checks": {"stateDatabase": "ok", "vaultStore": "ok"},
    }  # fmt: skip


def test_readyz_turns_not_ready_when_the_state_database_stops(make_server: Callable[..., Server]) -> None:
    root = Path(tempfile.mkdtemp(prefix="dpvault-ready-"))
    pg = PostgresServer(root)
    pg.start()
    try:
        server = make_server(database_url=pg.create_database())
        assert httpx.get(f"{server.base}/readyz", verify=server.ssl_context()).status_code == 200
        pg.stop()
        deadline = time.monotonic() + 30
        while True:
            r = httpx.get(f"{server.base}/readyz", verify=server.ssl_context(), timeout=15)
            if r.status_code == 503 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert r.status_code == 503, r.text
        body = r.json()
        assert body["status"] == "not ready" and body["checks"]["stateDatabase"] != "ok"
        assert body["checks"]["vaultStore"] == "ok"
        assert "127.0.0.1" not in r.text and "postgres" not in r.text.lower()  # no hosts or URLs
        assert httpx.get(f"{server.base}/healthz", verify=server.ssl_context()).status_code == 200
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_readyz_turns_not_ready_when_the_vault_store_is_gone(
    make_server: Callable[..., Server], tmp_path: Path
) -> None:
    store = tmp_path / "vault-store"
    server = make_server("--vault-store", str(store))
    assert httpx.get(f"{server.base}/readyz", verify=server.ssl_context()).status_code == 200
    shutil.rmtree(store)
    r = httpx.get(f"{server.base}/readyz", verify=server.ssl_context())
    assert r.status_code == 503 and r.json()["checks"]["vaultStore"] != "ok", r.text
    assert r.json()["checks"]["stateDatabase"] == "ok"

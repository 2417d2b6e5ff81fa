"""Job-failure alerts: a local webhook receiver gets the common-alert-schema POST for a failed
backup, again after it answered 500 once; a vault with alerts Disabled sends none; and a finished
job of each kind leaves one info line (JSON with --log-json)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.integration.test_protection import Protected, make_sample_database
from tests.support import API, PostgresServer, Server, wait_operation


class Receiver:
    """A webhook on 127.0.0.1 that answers 500 to its first ``fail_first`` POSTs, then 200."""

    def __init__(self, fail_first: int = 1, port: int = 0) -> None:
        self.fail_first = fail_first
        self.posts: list[tuple[int, dict[str, Any], dict[str, str]]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = 500 if len(receiver.posts) < receiver.fail_first else 200
                receiver.posts.append((status, json.loads(body), dict(self.headers)))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.http.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks/backup?token=secret-{uuid.uuid4().hex}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def wait(self, count: int, timeout: float = 60) -> list[tuple[int, dict[str, Any], dict[str, str]]]:
        deadline = time.monotonic() + timeout
        while len(self.posts) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(self.posts) >= count, f"{len(self.posts)} POSTs, expected {count}"
        return self.posts

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def failing_backup(
    server: Server, client: httpx.Client, pg: PostgresServer, *, alerts: str | None = None
) -> tuple[Protected, str]:
    db = make_sample_database(pg, customers=5, orders=5)
    p = Protected(server, client, pg, db).create()
    if alerts is not None:
        r = client.patch(
            f"{p.env.vault_path}?api-version={API}",
            json={
                "properties": {
                    "monitoringSettings": {"azureMonitorAlertSettings": {"alertsForAllJobFailures": alerts}}
                }
            },
        )
        assert r.status_code in (200, 202), r.text
        if r.status_code == 202:
            wait_operation(client, r.headers["Azure-AsyncOperation"])
    assert p.put()["status"] == "Succeeded"
    server.set_secret(p.uri, pg.ado(db, password="wrong-password"))
    job_id = p.backup()
    assert p.wait_job(job_id)["status"] == "Failed"
    return p, job_id


def test_a_failed_backup_is_posted_in_the_common_alert_schema_and_retried_after_a_500(
    make_server: Callable[..., Server], source_pg: PostgresServer, receiver: Receiver
) -> None:
    server = make_server("--alert-webhook", receiver.url)
    with server.client() as client:
        _, quiet_job = failing_backup(server, client, source_pg, alerts="Disabled")
        p, job_id = failing_backup(server, client, source_pg)
        job = p.job(job_id)
    receiver.wait(2)
    assert [status for status, *_ in receiver.posts[:2]] == [500, 200]
    bodies = [body for _, body, _ in receiver.posts]
    assert bodies[0] == bodies[1], "a retry sends the same alert"
    alert = bodies[0]
    assert alert["schemaId"] == "azureMonitorCommonAlertSchema"
    essentials, context = alert["data"]["essentials"], alert["data"]["alertContext"]
    assert essentials["monitorCondition"] == "Fired" and essentials["originAlertId"] == job_id
    assert essentials["alertId"].startswith(
        f"/subscriptions/{p.env.vault_path.split('/')[2]}/providers/Microsoft.AlertsManagement/alerts/"
    )
    assert p.env.vault_path.lower() in essentials["alertTargetIDs"]
    assert context["job"]["name"] == job_id and context["job"]["properties"]["status"] == "Failed"
    assert context["errorCode"] == job["errorDetails"][0]["code"] == "UserErrorDatabaseAuthenticationFailed"
    assert context["error"]["message"] == job["errorDetails"][0]["message"]
    assert context["recommendedAction"]
    assert receiver.posts[0][2]["Content-Type"].startswith("application/json")
    # the vault that turned alerts off sent none
    time.sleep(1.5)
    assert all(body["data"]["essentials"]["originAlertId"] != quiet_job for _, body, _ in receiver.posts)
    assert len(receiver.posts) == 2
    log = server.log()
    assert "alert delivered" in log and "secret-" not in log, (
        "webhook URLs (and their tokens) stay out of logs"
    )


def test_an_alert_queued_before_a_crash_is_delivered_after_the_restart(
    make_server: Callable[..., Server], source_pg: PostgresServer
) -> None:
    """The receiver is down (its port closed) when the backup fails; the server is killed; the
    receiver comes back on the same port and the restarted server delivers the queued alert."""
    gone = Receiver()
    url, port = gone.url, gone.port
    gone.close()
    server = make_server("--alert-webhook", url, "--lease-seconds", "2")
    with server.client() as client:
        _, job_id = failing_backup(server, client, source_pg)
    deadline = time.monotonic() + 30
    while "could not be reached" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "could not be reached" in server.log(), "the first delivery attempt failed"
    server.kill()
    back = Receiver(fail_first=0, port=port)
    try:
        server.start()
        (status, alert, _), *_ = back.wait(1, timeout=90)
        assert status == 200 and alert["data"]["essentials"]["originAlertId"] == job_id
    finally:
        back.close()


def test_one_info_line_per_finished_backup_restore_drill_and_retention(
    make_server: Callable[..., Server], source_pg: PostgresServer
) -> None:
    server = make_server("--log-json", "--clock", "manual", "--restore-drills")
    with server.client() as client:
        p = Protected(
            server, client, source_pg, make_sample_database(source_pg, customers=10, orders=10)
        ).create()
        assert p.put()["status"] == "Succeeded"
        job_id = p.backup()
        assert p.wait_job(job_id)["status"] == "Completed"
        (rp,) = p.points()
        r = client.post(
            f"{p.env.instance_path(p.name)}/restore?api-version={API}",
            json={
                "objectType": "AzureBackupRecoveryPointBasedRestoreRequest", "sourceDataStoreType": "VaultStore",
                "recoveryPointId": rp["name"],
                "restoreTargetInfo": {
                    "objectType": "RestoreFilesTargetInfo", "recoveryOption": "FailIfExists", "restoreLocation": "westus",
                    "targetDetails": {"url": f"file://{server.data_dir / 'restores'}", "filePrefix": f"r{uuid.uuid4().hex[:6]}",
                                      "restoreTargetLocationType": "AzureBlobs"},
                },
            },
        )  # fmt: skip
        assert r.status_code == 202, r.text
        wait_operation(client, r.headers["Azure-AsyncOperation"])
        r = client.post("/dpvault/clock/advance", json={"seconds": 5 * 86400})
        assert r.status_code == 200 and r.json()["complete"], r.text
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            finished = {(e.get("operation"), e.get("status")) for e in _events(server)}
            if {("Backup", "Completed"), ("Restore", "Completed"), ("RestoreDrill", "Completed"),
                    ("Retention", "Completed")} <= finished:  # fmt: skip
                break
            time.sleep(0.3)
    events = _events(server)
    backup = next(e for e in events if e.get("job") == job_id)
    assert backup["level"] == "info" and backup["event"] == "Backup completed"
    assert backup["instance"] == p.name.lower() and backup["recovery_point"] == rp["name"]
    assert backup["bytes"] > 0 and backup["duration_s"] >= 0
    for operation in ("Restore", "RestoreDrill", "Retention"):
        line = next(e for e in events if e.get("operation") == operation and e.get("status") == "Completed")
        assert line["level"] == "info" and line["instance"] == p.name.lower() and "duration_s" in line, line
    restore = next(e for e in events if e.get("operation") == "Restore")
    assert restore["recovery_point"] == rp["name"]
    retention = next(e for e in events if e.get("operation") == "Retention")
    assert retention["deleted"] >= 1


def _events(server: Server) -> list[dict[str, Any]]:
    out = []
    for line in server.log().splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out

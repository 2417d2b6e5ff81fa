"""Readers of the vault check its format: a recovery point whose manifest names a vault format this
dpvault does not know is refused by restore (nothing written to the target) and reported by
``dpvault verify``; one whose manifest is missing is reported damaged (docs/design/vault-format.md)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

from tests.integration.test_protection import Protected, vault_files
from tests.integration.test_restore import (
    database_exists,
    finish,
    protected,
    restore,
    restore_request,
    target_info,
)
from tests.support import PostgresServer, Server

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
    return subprocess.run(cmd, capture_output=True, text=True)


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

"""The README's examples run as written (only the server address, CA, token command and data dir
swapped): the SDK example, the backup-and-restore example that continues it, and the clock example."""

from __future__ import annotations

import contextlib
import io
import json
import re
import sys
from pathlib import Path
from typing import Any

from tests.integration.test_protection import make_sample_database
from tests.support import PostgresServer, Server

README = Path(__file__).resolve().parents[2] / "README.md"


def _run(source: str, scope: dict[str, Any]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(source, "README.md", "exec"), scope)
    return out.getvalue().strip()


def test_readme_examples_run(make_server, source_pg: PostgresServer) -> None:  # type: ignore[no-untyped-def]
    server: Server = make_server("--clock", "manual")
    text = README.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 3, "README has lost its python examples"
    sdk, restore = blocks[0], blocks[1]
    swaps = {
        'BASE, CA = "https://127.0.0.1:8443", ".dpvault/tls/ca.pem"': f"BASE, CA = {server.base!r}, {server.ca!r}",
        '[".venv/bin/dpvault", "token"]': repr(
            [sys.executable, "-m", "dpvault", "token", "--data-dir", str(server.data_dir)]
        ),
    }
    for old, new in swaps.items():
        assert old in sdk, f"README example changed: {old!r} not found"
        sdk = sdk.replace(old, new)
    scope: dict[str, Any] = {"__name__": "readme"}
    assert _run(sdk, scope) == "Succeeded ProtectionConfigured"

    # "the instance's secret must hold a real connection string": as the README's secrets section does
    database = make_sample_database(source_pg, customers=20, orders=20)
    server.set_secret("https://samplevault.vault.azure.net/secrets/credentials", source_pg.ado(database))
    old = 'Path(".dpvault/restores")'
    assert old in restore, "README restore example changed"
    restore = restore.replace(old, f"Path({str(server.data_dir / 'restores')!r})")
    expected = [ln.removeprefix("# ") for ln in restore.strip().splitlines() if ln.startswith("# ")]
    assert _run(restore, scope).splitlines() == expected == ["backup Completed", "restore Completed"]
    dumps = list((server.data_dir / "restores").glob("testdb-*.dump"))
    assert len(dumps) == 1 and dumps[0].with_name(dumps[0].name + ".sha256").exists()

    clock = re.search(
        r"-d '(\{\"seconds\": \d+\})' https://127\.0\.0\.1:8443/dpvault/clock/advance\n# (\{.*\})", text
    )
    assert clock, "README clock example changed"
    with server.client() as client:
        answer = client.post("/dpvault/clock/advance", json=json.loads(clock.group(1)))
    assert answer.status_code == 200, answer.text
    shown = json.loads(clock.group(2).replace('"…"', '"x"'))
    got = answer.json()
    assert {k: v for k, v in got.items() if k != "now"} == {k: v for k, v in shown.items() if k != "now"}, got

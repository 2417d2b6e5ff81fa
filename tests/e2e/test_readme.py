"""The README's SDK example runs as written (only the server address, CA and token command swapped)."""

from __future__ import annotations

import contextlib
import io
import re
import sys
from pathlib import Path

from tests.support import Server

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_sdk_example_runs(make_server) -> None:  # type: ignore[no-untyped-def]
    server: Server = make_server()
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S)
    assert code, "README has no python example"
    source = code.group(1)
    swaps = {
        'BASE, CA = "https://127.0.0.1:8443", ".dpvault/tls/ca.pem"': f"BASE, CA = {server.base!r}, {server.ca!r}",
        '[".venv/bin/dpvault", "token"]': repr(
            [sys.executable, "-m", "dpvault", "token", "--data-dir", str(server.data_dir)]
        ),
    }
    for old, new in swaps.items():
        assert old in source, f"README example changed: {old!r} not found"
        source = source.replace(old, new)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(source, "README.md", "exec"), {"__name__": "readme"})
    assert out.getvalue().strip() == "Succeeded ProtectionConfigured"

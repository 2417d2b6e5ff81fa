"""`serve --no-access-log` really drops the per-request line; by default each request logs one,
with method, path and status (and never the Authorization header)."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from tests.support import Server


def test_access_log_on_by_default_and_off_with_the_flag(make_server: Callable[..., Server]) -> None:
    for args, expected in ((), 1), (("--no-access-log",), 0):
        server = make_server(*args)
        marker = f"probe-{uuid.uuid4().hex}"
        token = server.token()
        with server.client(token) as client:
            assert client.get(f"/subscriptions/{marker}?api-version=2022-12-01").status_code == 400
        server.stop()  # flushes the log
        lines = [ln for ln in server.log().splitlines() if marker in ln and "request" in ln]
        assert len(lines) == expected, server.log()
        if expected:
            assert "GET" in lines[0] and "status=400" in lines[0]
        assert token not in server.log()

"""Durability: a server killed with SIGKILL mid-operation finishes the operation after restart."""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.support import API, Env, Server, wait_operation


def test_put_operation_completes_after_sigkill_and_restart(make_server: Callable[..., Server]) -> None:
    server = make_server("--provisioning-delay", "3", "--lease-seconds", "2")
    with server.client() as client:
        env = Env(client).create()
        r = env.put_instance("survivor")
        assert r.status_code == 201, r.text
        aao = r.headers["Azure-AsyncOperation"]
        status = client.get(aao).json()
        assert status["status"] == "InProgress"
        assert "endTime" not in status

    server.kill()  # SIGKILL while the worker is inside the 3 s configuration
    server.start()

    with server.client() as client:
        # the status URL answers across the restart, still in progress until the lease expires
        assert client.get(aao).status_code == 200
        started = time.monotonic()
        op = wait_operation(client, aao, timeout=30)
        assert op["status"] == "Succeeded", op
        assert op["endTime"] >= op["startTime"]
        assert time.monotonic() - started < 30
        got = client.get(f"{env.instance_path('survivor')}?api-version={API}")
        assert got.status_code == 200
        props = got.json()["properties"]
        assert props["provisioningState"] == "Succeeded"
        assert props["currentProtectionState"] == "ProtectionConfigured"
        # what existed before the crash is still there
        assert client.get(f"{env.vault_path}?api-version={API}").status_code == 200
        assert client.get(f"{env.policy_id}?api-version={API}").status_code == 200

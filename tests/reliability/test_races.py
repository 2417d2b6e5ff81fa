"""Races on one name through the real server: conflicting PUTs end 200/201/202/409, never 500, and
none waits long (issue 15: on PostgreSQL they deadlocked, ended 500 and took up to 37 s)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from tests.support import API, Env, Server, instance_body, wait_operation

# 204: a DELETE that finds the instance already deleted by the other DELETE of the race (ARM's answer).
ALLOWED = {200, 201, 202, 204, 409}
# The slowest request of a race may take this long (the race is a few dozen requests on a shared
# 2-core machine; a deadlock or a client timeout takes far longer).
SLOWEST = 10.0


def _race(server: Server, token: str, requests: list[Callable[[httpx.Client], httpx.Response]]) -> list[Any]:
    """Run each request on its own connection, released together; (status, seconds, body) each."""
    results: list[Any] = [None] * len(requests)
    clients = [server.client(token) for _ in requests]
    for c in clients:  # connect (and handshake) before the race starts
        c.get(f"/providers/Microsoft.DataProtection/operations?api-version={API}")
    barrier = threading.Barrier(len(requests))

    def run(i: int) -> None:
        barrier.wait()
        started = time.monotonic()
        try:
            r = requests[i](clients[i])
            results[i] = (r.status_code, time.monotonic() - started, r.text)
        except httpx.HTTPError as exc:  # a client timeout is a failure of the race too
            results[i] = (type(exc).__name__, time.monotonic() - started, str(exc))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for c in clients:
        c.close()
    return results


def _check(results: list[Any], server: Server) -> None:
    statuses = [r[0] for r in results]
    assert set(statuses) <= ALLOWED, (statuses, [r[2] for r in results if r[0] not in ALLOWED][:3])
    slowest = max(r[1] for r in results)
    counts = {s: statuses.count(s) for s in sorted(set(statuses), key=str)}
    print(f"race of {len(results)}: {counts}, slowest {slowest:.2f} s")
    assert slowest < SLOWEST, f"slowest request took {slowest:.1f} s"
    for status, _, text in results:
        if status == 409:
            assert '"code"' in text, text  # a CloudError
    assert "unhandled error" not in server.log()


def _settle(client: httpx.Client, env: Env, name: str) -> dict[str, Any]:
    """Once the race is over the instance's last operation ends and the instance is usable."""
    deadline = time.monotonic() + 30
    while True:
        got = client.get(f"{env.instance_path(name)}?api-version={API}")
        assert got.status_code == 200, got.text
        state = got.json()["properties"]["provisioningState"]
        if state in ("Succeeded", "Failed") or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert state == "Succeeded", got.text
    return got.json()


def test_conflicting_puts_of_one_instance_are_409s_not_500s(make_server: Callable[..., Server]) -> None:
    server = make_server()
    token = server.token()
    with server.client(token) as client:
        env = Env(client).create()
        url = f"{env.instance_path('contested')}?api-version={API}"
        for round_ in range(3):
            bodies = []
            for i in range(50):
                body = instance_body(env.policy_id)
                body["properties"]["friendlyName"] = f"writer-{round_}-{i}"
                bodies.append(body)
            results = _race(server, token, [lambda c, b=b: c.put(url, json=b) for b in bodies])
            _check(results, server)
            assert any(r[0] in (200, 201) for r in results), results
            _settle(client, env, "contested")
        # an ordinary update afterwards goes through
        r = client.put(url, json=instance_body(env.policy_id))
        assert r.status_code == 200, r.text
        assert wait_operation(client, r.headers["Azure-AsyncOperation"])["status"] == "Succeeded"


def test_same_name_puts_with_different_tags_are_409s_not_500s(make_server: Callable[..., Server]) -> None:
    server = make_server()
    token = server.token()
    with server.client(token) as client:
        env = Env(client).create()
        env.create_instance("tagged")
        url = f"{env.instance_path('tagged')}?api-version={API}"
        for round_ in range(3):
            bodies = [
                instance_body(env.policy_id, tags={"round": str(round_), "writer": str(i)}) for i in range(8)
            ]
            # and a DELETE in the last round, racing the updates
            requests = [lambda c, b=b: c.put(url, json=b) for b in bodies]
            results = _race(server, token, requests)
            _check(results, server)
            assert any(r[0] == 200 for r in results), results
            _settle(client, env, "tagged")
        requests = [lambda c, b=b: c.put(url, json=b) for b in bodies] + [lambda c: c.delete(url)] * 2
        results = _race(server, token, requests)
        _check(results, server)

"""The crash loop (issue 15, item 6): the server is killed with SIGKILL again and again in the middle
of concurrent PUT/DELETE bursts; afterwards every acknowledged write is there (an acknowledged PUT's
version, an acknowledged DELETE's absence), every acknowledged operation ends, and no request was
answered 500."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.support import API, Env, Server, instance_body, wait_operation

CYCLES = 6
THREADS = 8
NAMES_PER_THREAD = 4


@dataclass
class Outcome:
    """What one client knows of a name: the last answer it got, and whether requests it sent after
    that went unanswered (killed mid-request: they may or may not have happened)."""

    last: tuple[str, str | None] | None = None  # ("put", version) or ("delete", None)
    in_doubt: bool = False
    operations: list[str] = field(default_factory=list)  # Azure-AsyncOperation URLs acknowledged


def _burst(server: Server, token: str, env: Env, names: list[str], outcomes: dict[str, Outcome],
           statuses: list[int], stop: threading.Event, seed: int) -> None:  # fmt: skip
    rng = random.Random(seed)
    with server.client(token) as client:
        seq = 0
        while not stop.is_set():
            name = rng.choice(names)
            outcome = outcomes[name]
            url = f"{env.instance_path(name)}?api-version={API}"
            seq += 1
            delete = outcome.last is not None and outcome.last[0] == "put" and rng.random() < 0.4
            version = f"{seed}-{seq}"
            try:
                if delete:
                    r = client.delete(url)
                else:
                    r = client.put(url, json=instance_body(env.policy_id, tags={"v": version}))
            except httpx.HTTPError:  # the server died under this request
                outcome.in_doubt = True
                return
            statuses.append(r.status_code)
            if r.status_code in (200, 201):
                outcome.last, outcome.in_doubt = ("put", version), False
                outcome.operations.append(r.headers["Azure-AsyncOperation"])
            elif r.status_code in (202, 204):
                outcome.last, outcome.in_doubt = ("delete", None), False
                if r.status_code == 202:
                    outcome.operations.append(r.headers["Azure-AsyncOperation"])


def test_every_acknowledged_write_survives_sigkill_under_bursts(make_server: Callable[..., Server]) -> None:
    server = make_server("--lease-seconds", "2", "--no-access-log")
    token = server.token()
    with server.client(token) as client:
        env = Env(client).create()
    names = {t: [f"t{t}-n{i}" for i in range(NAMES_PER_THREAD)] for t in range(THREADS)}
    outcomes = {name: Outcome() for group in names.values() for name in group}
    statuses: list[int] = []
    rng = random.Random(15)
    started = time.monotonic()
    for cycle in range(CYCLES):
        stop = threading.Event()
        threads = [
            threading.Thread(target=_burst, args=(server, token, env, names[t], outcomes, statuses, stop, cycle * 100 + t))
            for t in range(THREADS)
        ]  # fmt: skip
        answered = len(statuses)
        for t in threads:
            t.start()
        # a burst long enough to acknowledge writes however loaded the machine (a slow state store
        # answers fewer requests per second), then a random moment
        deadline = time.monotonic() + 20
        while len(statuses) - answered < 3 * THREADS and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.2, 1.0))
        server.kill()  # SIGKILL, mid-burst
        stop.set()
        for t in threads:
            t.join(30)
            assert not t.is_alive()
        server.start()
    print(f"{CYCLES} SIGKILLs, {len(statuses)} answered requests in {time.monotonic() - started:.0f} s")
    assert 500 not in statuses and set(statuses) <= {200, 201, 202, 204, 409}, sorted(set(statuses))

    with server.client(token) as client:
        # every acknowledged operation ends
        for outcome in outcomes.values():
            for url in outcome.operations:
                op = wait_operation(client, url, timeout=60)
                assert op["status"] in ("Succeeded", "Failed"), op
        # every acknowledged write is there, unless a later request of the same client is in doubt
        checked = 0
        for name, outcome in outcomes.items():
            if outcome.last is None or outcome.in_doubt:
                continue
            checked += 1
            r = client.get(f"{env.instance_path(name)}?api-version={API}")
            if outcome.last[0] == "delete":
                assert r.status_code == 404, (name, r.text)
            else:
                assert r.status_code == 200, (name, r.text)
                body: dict[str, Any] = r.json()
                assert body["tags"] == {"v": outcome.last[1]}, (name, body["tags"], outcome)
                assert body["properties"]["provisioningState"] == "Succeeded", body["properties"]
        assert checked >= len(outcomes) // 2, f"only {checked} names ended acknowledged"
    assert "unhandled error" not in server.log()

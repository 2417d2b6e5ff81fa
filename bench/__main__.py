"""dpvault's benchmark harness: ``.venv/bin/python -m bench`` (needs wrk: ``apt-get install wrk``).

Every figure is printed next to its baseline, measured in the same run on the same machine:

- P1 PUT-create throughput (new backup instances/s, wrk, fixed concurrency) vs a floor ASGI app on
  the same server stack, and vs moto's server doing AWS Backup CreateBackupVault;
- P2 PUT -> operation Succeeded latency (one client polling Azure-AsyncOperation without sleeping);
- P3 GET-instance latency with 1k and with 100k instances in the vault, and list-page latency at 100k;
- P5 PUT-create throughput with 2 API processes / 1 process, on PostgreSQL;
- P6 server memory (RSS) after 100k instances were loaded and read.

The server runs on one CPU and wrk on the other (taskset) where the machine has two; see RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench import wrk
from tests.support import API, Env, PostgresServer, Server, free_port, instance_body

ROOT = Path(__file__).resolve().parents[1]


def pinned(cpu: int | None) -> list[str]:
    return ["taskset", "-c", str(cpu)] if cpu is not None else []


class PinnedServer(Server):
    """dpvault serve on one CPU, quiet."""

    def __init__(
        self,
        data_dir: Path,
        *,
        cpu: int | None,
        database_url: str | None = None,
        args: list[str] | None = None,
    ) -> None:
        super().__init__(
            data_dir,
            database_url=database_url,
            args=["--no-access-log", "--log-level", "warning", *(args or [])],
        )
        self.cpu = cpu

    def start(self, timeout: float = 60.0) -> Server:
        import contextlib

        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [*pinned(self.cpu), sys.executable, "-m", "dpvault", "serve", "--port", str(self.port),
               "--data-dir", str(self.data_dir), "--retry-after", "1", *self.args]  # fmt: skip
        if self.database_url:
            cmd += ["--database-url", self.database_url]
        self.proc = subprocess.Popen(
            cmd, stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError, OSError):
                if httpx.get(f"{self.base}/healthz", verify=self.ssl_context(), timeout=2).status_code == 200:
                    return self
            time.sleep(0.2)
        raise RuntimeError(self.log())


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def put_script(server: Server, env: Env, token: str) -> str:
    body = json.dumps(instance_body(env.policy_id))
    return wrk.lua_put(
        f"{env.vault_path}/backupInstances/bi-",
        body,
        {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )


# -- P1 ----------------------------------------------------------------------------------------


def p1(
    work: Path, server_cpu: int | None, client_cpu: int | None, seconds: int, connections: int
) -> dict[str, Any]:
    server = PinnedServer(work / "p1", cpu=server_cpu).start()
    out: dict[str, Any] = {}
    try:
        token = server.token()
        with server.client(token) as client:
            env = Env(client).create()
        wrk.run(
            server.base + "/",
            put_script(server, env, token),
            connections=connections,
            seconds=2,
            cpu=client_cpu,
        )  # warm-up
        _drain(server.data_dir)  # the warm-up's configurations
        out["dpvault"] = wrk.run(
            server.base + "/",
            put_script(server, env, token),
            connections=connections,
            seconds=seconds,
            cpu=client_cpu,
        )
        out["drain"] = _drain(server.data_dir)
        cert, key = server.data_dir / "tls" / "server.pem", server.data_dir / "tls" / "server-key.pem"
    finally:
        server.stop()
    port = free_port()
    floor = subprocess.Popen(
        [
            *pinned(server_cpu),
            sys.executable,
            "-m",
            "bench.floor",
            "--port",
            str(port),
            "--cert",
            str(cert),
            "--key",
            str(key),
        ],
        cwd=ROOT,
    )
    try:
        _wait_port(port)
        script = wrk.lua_put("/x/", "{}", {"Content-Type": "application/json"}, suffix="")
        wrk.run(f"https://127.0.0.1:{port}/", script, connections=connections, seconds=2, cpu=client_cpu)
        out["floor"] = wrk.run(
            f"https://127.0.0.1:{port}/", script, connections=connections, seconds=seconds, cpu=client_cpu
        )
    finally:
        floor.terminate()
        floor.wait()
    out["moto"] = _moto(server_cpu, client_cpu, seconds, connections)
    return out


def _drain(data_dir: Path, timeout: float = 120) -> float:
    """Seconds until the worker has configured every instance PUT so far: the 201s/s figure counts
    only the requests, and a worker that falls behind during the run would flatter it."""
    import sqlite3

    started = time.monotonic()
    with sqlite3.connect(data_dir / "state.db") as conn:
        while time.monotonic() - started < timeout:
            (left,) = conn.execute("SELECT count(*) FROM jobs WHERE state IN ('ready', 'running')").fetchone()
            if not left:
                break
            time.sleep(0.02)
    return time.monotonic() - started


def _wait_port(port: int, timeout: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def _moto(
    server_cpu: int | None, client_cpu: int | None, seconds: int, connections: int
) -> wrk.Result | None:
    import shutil

    binary = shutil.which("moto_server")
    if binary is None:
        return None
    port = free_port()
    proc = subprocess.Popen(
        [*pinned(server_cpu), binary, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_port(port)
        auth = "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20260101/us-east-1/backup/aws4_request, SignedHeaders=host, Signature=0"
        script = wrk.lua_put(
            f"/backup-vaults/v{uuid.uuid4().hex[:6]}-",
            "{}",
            {"Authorization": auth, "Content-Type": "application/json"},
            suffix="",
        )
        wrk.run(f"http://127.0.0.1:{port}/", script, connections=connections, seconds=2, cpu=client_cpu)
        script = wrk.lua_put(
            f"/backup-vaults/w{uuid.uuid4().hex[:6]}-",
            "{}",
            {"Authorization": auth, "Content-Type": "application/json"},
            suffix="",
        )
        return wrk.run(
            f"http://127.0.0.1:{port}/", script, connections=connections, seconds=seconds, cpu=client_cpu
        )
    finally:
        proc.terminate()
        proc.wait()


# -- P2 ----------------------------------------------------------------------------------------


def p2(work: Path, server_cpu: int | None, samples: int) -> dict[str, float]:
    server = PinnedServer(work / "p2", cpu=server_cpu).start()
    try:
        with server.client() as client:
            env = Env(client).create()
            latencies = []
            for i in range(samples + 20):
                started = time.perf_counter()
                r = client.put(
                    f"{env.instance_path(f'lat-{i}')}?api-version={API}", json=instance_body(env.policy_id)
                )
                assert r.status_code == 201, r.text
                url = r.headers["Azure-AsyncOperation"]
                while client.get(url).json()["status"] != "Succeeded":
                    pass
                if i >= 20:  # warm-up
                    latencies.append((time.perf_counter() - started) * 1000)
    finally:
        server.stop()
    latencies.sort()
    return {
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1],
        "samples": len(latencies),
    }


# -- P3 / P6 -----------------------------------------------------------------------------------


async def _bulk(url: str, env: Env, template: dict[str, Any], count: int, start: int) -> None:
    """Load instances straight into the state store (setup only: the API serves them afterwards)."""
    import msgspec

    from dpvault.arm import ids
    from dpvault.store import Store

    store = await Store.open(url)
    vault_key = ids.key(env.vault_path)
    rg_key = ids.key(env.vault_path.split("/providers/")[0])
    now = time.time()
    batch = 2000
    for first in range(start, start + count, batch):

        async def write(tx, first=first):  # type: ignore[no-untyped-def]
            for i in range(first, min(first + batch, start + count)):
                name = f"bulk-{i}"
                body = {**template, "id": env.instance_path(name), "name": name}
                await tx.insert_resource(
                    key=f"{vault_key}/backupinstances/{name}", kind="backupInstances", subscription=env.vault_path.split("/")[2],
                    rg_key=rg_key, parent_key=vault_key, name=name, body=msgspec.json.encode(body), state="Succeeded",
                    active_operation=None, revision=1, created_at=now, updated_at=now,
                )  # fmt: skip

        await store.transact(write)
    await store.close()


def p3(
    work: Path, server_cpu: int | None, client_cpu: int | None, seconds: int, total: int
) -> dict[str, Any]:
    server = PinnedServer(work / "p3", cpu=server_cpu).start()
    out: dict[str, Any] = {}
    try:
        token = server.token()
        headers = {"Authorization": f"Bearer {token}"}
        with server.client(token) as client:
            env = Env(client).create()
            template = env.create_instance("probe")
        url = f"sqlite:///{server.data_dir / 'state.db'}"
        asyncio.run(_bulk(url, env, template, 999, 0))
        get_url = f"{server.base}{env.instance_path('probe')}?api-version={API}"
        wrk.run(get_url, wrk.lua_get(headers), connections=1, seconds=2, cpu=client_cpu)
        out["get_1k"] = wrk.run(get_url, wrk.lua_get(headers), connections=1, seconds=seconds, cpu=client_cpu)
        asyncio.run(_bulk(url, env, template, total - 1000, 999))
        wrk.run(get_url, wrk.lua_get(headers), connections=1, seconds=2, cpu=client_cpu)
        out["get_100k"] = wrk.run(
            get_url, wrk.lua_get(headers), connections=1, seconds=seconds, cpu=client_cpu
        )
        list_url = f"{server.base}{env.vault_path}/backupInstances?api-version={API}"
        out["list_first"] = wrk.run(
            list_url, wrk.lua_get(headers), connections=1, seconds=seconds, cpu=client_cpu
        )
        with server.client(token) as client:
            page = client.get(f"{list_url.replace(server.base, '')}&$skipToken={_token(total // 2)}").json()
            assert len(page["value"]) == 200, page
        out["list_middle"] = wrk.run(
            f"{list_url}&$skipToken={_token(total // 2)}",
            wrk.lua_get(headers),
            connections=1,
            seconds=seconds,
            cpu=client_cpu,
        )
        assert server.proc is not None
        out["rss_mib"] = rss_mib(server.proc.pid)
    finally:
        server.stop()
    return out


def _token(pk: int) -> str:
    import base64

    return base64.urlsafe_b64encode(str(pk).encode()).decode().rstrip("=")


# -- P5 ----------------------------------------------------------------------------------------


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def _busy(before: tuple[int, int], after: tuple[int, int]) -> float:
    return 100.0 * (after[0] - before[0]) / max(1, after[1] - before[1])


def p5(work: Path, seconds: int, connections: int) -> dict[str, Any]:
    pg = PostgresServer(Path(tempfile.mkdtemp(prefix="dpvault-bench-pg-")))
    pg.start()
    out: dict[str, Any] = {}
    try:
        for processes in (1, 2):
            server = PinnedServer(
                work / f"p5-{processes}",
                cpu=None,
                database_url=pg.create_database(),
                args=["--workers", str(processes)],
            ).start()
            try:
                token = server.token()
                with server.client(token) as client:
                    env = Env(client).create()
                wrk.run(server.base + "/", put_script(server, env, token), connections=connections, seconds=2)
                before = _cpu_times()
                out[f"processes_{processes}"] = wrk.run(
                    server.base + "/",
                    put_script(server, env, token),
                    connections=connections,
                    seconds=seconds,
                )
                out[f"busy_{processes}"] = _busy(before, _cpu_times())
            finally:
                server.stop()
    finally:
        pg.stop()
    return out


# -- report ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--only", default="p1,p2,p3,p5", help="comma-separated scenarios")
    args = parser.parse_args()
    if not wrk.available():
        sys.exit("wrk is needed: apt-get install wrk")
    cpus = wrk.cpus()
    server_cpu, client_cpu = (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)
    work = Path(tempfile.mkdtemp(prefix="dpvault-bench-"))
    only = set(args.only.split(","))
    rows: list[tuple[str, str, str]] = []
    if "p1" in only:
        r = p1(work, server_cpu, client_cpu, args.seconds, args.connections)
        dp, fl, mo = r["dpvault"], r["floor"], r["moto"]
        rows.append(
            (
                "P1 PUT-create, dpvault",
                f"{dp.rps:,.0f} req/s (p50 {dp.p50_ms:.1f} ms, p99 {dp.p99_ms:.1f} ms, errors {dp.errors})",
                "",
            )
        )
        sustained = dp.requests / (args.seconds + r["drain"])
        rows.append(
            (
                "P1 worker backlog after the run",
                f"drained in {r['drain']:.2f} s: {sustained:,.0f} instances/s configured end to end",
                f"end-to-end / moto = {sustained / mo.rps:.1f}x" if mo is not None else "",
            )
        )
        rows.append(
            (
                "P1 floor app (static 201)",
                f"{fl.rps:,.0f} req/s",
                f"dpvault / floor = **{dp.rps / fl.rps:.2f}** (goal >= 0.50)",
            )
        )
        if mo is not None:
            rows.append(
                (
                    "P1 moto CreateBackupVault",
                    f"{mo.rps:,.0f} req/s (errors {mo.errors})",
                    f"dpvault / moto = **{dp.rps / mo.rps:.1f}x** (goal >= 3x)",
                )
            )
    if "p2" in only:
        r2 = p2(work, server_cpu, args.samples)
        rows.append(
            (
                "P2 PUT -> Succeeded",
                f"p50 {r2['p50_ms']:.1f} ms, p99 {r2['p99_ms']:.1f} ms ({r2['samples']} samples)",
                "goal p50 <= 10 ms, p99 <= 50 ms",
            )
        )
    if "p3" in only:
        r3 = p3(work, server_cpu, client_cpu, args.seconds, args.instances)
        g1, g2 = r3["get_1k"], r3["get_100k"]
        rows.append(("P3 GET instance, 1k in vault", f"p50 {g1.p50_ms:.2f} ms ({g1.rps:,.0f} req/s)", ""))
        rows.append(
            (
                f"P3 GET instance, {args.instances // 1000}k in vault",
                f"p50 {g2.p50_ms:.2f} ms ({g2.rps:,.0f} req/s)",
                f"ratio = **{g2.p50_ms / g1.p50_ms:.2f}** (goal <= 1.1)",
            )
        )
        rows.append(
            (
                f"P3 list page (200), first / middle, {args.instances // 1000}k",
                f"p50 {r3['list_first'].p50_ms:.1f} ms / {r3['list_middle'].p50_ms:.1f} ms",
                "",
            )
        )
        rows.append(
            (
                f"P6 server RSS after {args.instances // 1000}k instances",
                f"{r3['rss_mib']:.0f} MiB",
                "goal <= 150 MB",
            )
        )
    if "p5" in only:
        r5 = p5(work, args.seconds, args.connections)
        one, two = r5["processes_1"], r5["processes_2"]
        rows.append(
            (
                "P5 PUT-create on PostgreSQL, 1 process",
                f"{one.rps:,.0f} req/s (machine {r5['busy_1']:.0f}% busy)",
                "",
            )
        )
        rows.append(
            (
                "P5 PUT-create on PostgreSQL, 2 processes",
                f"{two.rps:,.0f} req/s (machine {r5['busy_2']:.0f}% busy)",
                f"2 / 1 = **{two.rps / one.rps:.2f}** (goal >= 1.7)",
            )
        )
    print()
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"server CPU {server_cpu}, wrk CPU {client_cpu}, wrk -c{args.connections} -d{args.seconds}s")  # fmt: skip
    print()
    print("| scenario | figure | vs baseline |")
    print("|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()

"""Whole-server backup benchmark: dpvault's backup of a PostgreSQL flexible server (4 databases,
~1 GB in all) through the real server process and API, against raw sequential ``pg_dump -Fc`` of
the four databases, measured side by side in one run.

    .venv/bin/python -m bench.flexible [--total-mb 1000] [--rounds 3] [--jobs 1,2] [--store local|azure]

Each value of ``--jobs`` is a dpvault server of its own started with ``DPVAULT_PG_DUMP_JOBS`` set to
it (1: one database after another; 2: the next database dumped into a spool while the current one
streams), all protecting the same throwaway PostgreSQL server through its source mapping. Every
round runs the raw dumps (``pg_dump -Fc > file`` + fsync, one database after the other), then, for
each server in turn (the order alternating between rounds), a new instance in a new vault: its
first backup (every chunk new) and a repeat backup of the unchanged server (chunks found in the
vault), each timed from POST .../backup to job Completed (globals, one ``pg_dump -Fc -Z0`` per
database, chunked, compressed, encrypted, each archive checked with ``pg_restore --list``, the point
committed). Prints each ratio dpvault / raw (the goal: <= 0.7), the machine's CPU use while each ran
(/proc/stat) and the server's RSS (goal: flat).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.backup import server_rss, vault_store
from tests.support import API, SUB, Env, PostgresServer, Server, policy_body, wait_operation

FLEX_TYPE = "Microsoft.DBforPostgreSQL/flexibleServers"
SHARES = (0.30, 0.25, 0.25, 0.20)  # of --total-mb, one per database


def make_database(pg: PostgresServer, name: str, size_mb: int) -> int:
    """A database of about ``size_mb`` (a table of hashes and numbers and an index); its size."""
    pg.create_database(name)
    rows = size_mb * 1024 * 1024 // 210  # ~210 bytes a row with its index entries
    pg.sql(
        name,
        f"""
        CREATE TABLE events (id bigint PRIMARY KEY, a text, b text, c text, n double precision);
        INSERT INTO events SELECT g, md5(g::text), md5((g * 7)::text), md5((g * 13)::text), random()
        FROM generate_series(1, {rows}) g;
        CREATE INDEX events_n ON events (n);
        """,
    )
    pg.sql(name, "VACUUM ANALYZE events")
    return int(pg.sql(name, "SELECT pg_database_size(current_database())")[0][0])


def raw_dumps(pg: PostgresServer, databases: list[str], pg_dump: str, work: Path) -> tuple[float, int]:
    """``pg_dump -Fc > file`` (+ fsync) of each database, one after the other: seconds, bytes."""
    env = {**os.environ, "PGHOST": "127.0.0.1", "PGPORT": str(pg.port), "PGUSER": "postgres",
           "PGPASSWORD": pg.password}  # fmt: skip
    size = 0
    started = time.perf_counter()
    for database in databases:
        target = work / f"raw-{database}.dump"
        with open(target, "wb") as out:
            subprocess.run([pg_dump, "-Fc", "--no-password", database], stdout=out, env=env, check=True)
            out.flush()
            os.fsync(out.fileno())
        size += target.stat().st_size
    elapsed = time.perf_counter() - started
    for database in databases:
        (work / f"raw-{database}.dump").unlink()
    return elapsed, size


def set_source(server: Server, resource_id: str, value: str) -> None:
    import sys

    cmd = [sys.executable, "-m", "dpvault", "sources", "set", resource_id, "--data-dir", str(server.data_dir)]
    done = subprocess.run(
        cmd, input=value, capture_output=True, text=True, env={**os.environ, **server.environ}
    )
    assert done.returncode == 0, done.stderr


class Protected:
    """One dpvault server protecting the bench's PostgreSQL server as a flexible server."""

    def __init__(self, server: Server, client: httpx.Client, pg: PostgresServer) -> None:
        self.server, self.client = server, client
        self.env = Env(client).create()
        r = client.put(
            f"{self.env.vault_path}/backupPolicies/flex?api-version={API}", json=policy_body(FLEX_TYPE)
        )
        assert r.status_code == 200, r.text
        server_id = (f"/subscriptions/{SUB}/resourceGroups/rg-bench/providers/Microsoft.DBforPostgreSQL/"
                     f"flexibleServers/bench-{uuid.uuid4().hex[:6]}")  # fmt: skip
        set_source(server, server_id, pg.url("postgres"))
        info = {"objectType": "Datasource", "resourceID": server_id, "resourceName": server_id.rsplit("/", 1)[-1],
                "resourceType": FLEX_TYPE, "resourceLocation": "westus", "datasourceType": FLEX_TYPE}  # fmt: skip
        body = {"properties": {"objectType": "BackupInstance", "friendlyName": "bench", "dataSourceInfo": info,
                               "dataSourceSetInfo": {**info, "objectType": "DatasourceSet"},
                               "policyInfo": {"policyId": f"{self.env.vault_path}/backupPolicies/flex"},
                               "validationType": "DeepValidation"}}  # fmt: skip
        r = client.put(f"{self.env.instance_path('bench')}?api-version={API}", json=body)
        assert r.status_code in (200, 201), r.text
        op = wait_operation(client, r.headers["Azure-AsyncOperation"], timeout=120)
        assert op["status"] == "Succeeded", op

    def backup(self) -> tuple[float, dict[str, Any], int]:
        """Seconds from POST .../backup to job Completed, the job, the server's peak RSS (KiB)."""
        assert self.server.proc is not None
        pid = self.server.proc.pid
        samples: list[int] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                samples.append(server_rss(pid))
                time.sleep(0.1)

        sampler = threading.Thread(target=sample)
        sampler.start()
        started = time.perf_counter()
        try:
            r = self.client.post(f"{self.env.instance_path('bench')}/backup?api-version={API}",
                                 json={"backupRuleOptions": {"ruleName": "BackupWeekly"}})  # fmt: skip
            assert r.status_code == 202, r.text
            assert wait_operation(self.client, r.headers["Azure-AsyncOperation"])["status"] == "Succeeded"
            job_id = self.client.get(r.headers["Location"]).json()["jobId"]
            while True:
                job = self.client.get(f"{self.env.vault_path}/backupJobs/{job_id}?api-version={API}").json()
                if job["properties"]["status"] != "InProgress":
                    break
                time.sleep(0.05)
            elapsed = time.perf_counter() - started
        finally:
            stop.set()
            sampler.join()
        assert job["properties"]["status"] == "Completed", job
        return elapsed, job["properties"], max(samples or [0])


def cpu_busy() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine so far (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


@dataclass
class Figures:
    first: list[float] = field(default_factory=list)
    repeat: list[float] = field(default_factory=list)
    first_busy: list[float] = field(default_factory=list)
    repeat_busy: list[float] = field(default_factory=list)
    peaks: list[int] = field(default_factory=list)


def timed(p: Protected) -> tuple[float, dict[str, Any], int, float]:
    before = cpu_busy()
    elapsed, job, peak = p.backup()
    after = cpu_busy()
    busy = (after[0] - before[0]) / max(1, after[1] - before[1])
    return elapsed, job, peak, busy


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--total-mb", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", default="1,2", help="DPVAULT_PG_DUMP_JOBS of each server, comma-separated")
    parser.add_argument("--store", choices=["local", "azure"], default="local")
    args = parser.parse_args()
    variants = [int(j) for j in args.jobs.split(",")]
    from dpvault.engines.postgres import find_tools

    tools = find_tools()
    assert tools, "pg_dump not found"
    work = Path(tempfile.mkdtemp(prefix="dpvault-bench-flex-"))
    pg = PostgresServer(Path(tempfile.mkdtemp(prefix="dpvault-bench-flexpg-")))
    pg.start()
    stack = contextlib.ExitStack()
    servers: dict[int, Server] = {}
    clients: dict[int, httpx.Client] = {}
    try:
        names = [f"db{i}_{uuid.uuid4().hex[:4]}" for i in range(len(SHARES))]
        total = 0
        for name, share in zip(names, SHARES, strict=True):
            size = make_database(pg, name, int(args.total_mb * share))
            total += size
            print(f"database {name}: {size / 1e6:.0f} MB", flush=True)
        print(f"server: {len(names)} databases, {total / 1e6:.0f} MB", flush=True)
        for jobs in variants:
            store_args, environ = stack.enter_context(vault_store(args.store))
            server = Server(work / f"server-j{jobs}", args=["--no-access-log", *store_args],
                            environ={**environ, "DPVAULT_PG_DUMP_JOBS": str(jobs)})  # fmt: skip
            servers[jobs] = server.start()
            clients[jobs] = stack.enter_context(server.client())
        figures = {j: Figures() for j in variants}
        baselines = {j: server_rss(servers[j].proc.pid) for j in variants}  # type: ignore[union-attr]
        raw_times: list[float] = []
        raw_busy: list[float] = []
        raw_size = 0
        for round_no in range(args.rounds):
            before = cpu_busy()
            raw, raw_size = raw_dumps(pg, names, tools.pg_dump, work)
            after = cpu_busy()
            raw_times.append(raw)
            raw_busy.append((after[0] - before[0]) / max(1, after[1] - before[1]))
            line = [f"round {round_no + 1}: raw {raw:.2f}s (CPU {raw_busy[-1]:.0%})"]
            order = variants if round_no % 2 == 0 else list(reversed(variants))
            for jobs in order:
                # a new vault each round: its first backup stores every chunk; then a repeat
                p = Protected(servers[jobs], clients[jobs], pg)
                f = figures[jobs]
                elapsed, job, peak, busy = timed(p)
                stored = int(job["extendedInfo"]["additionalDetails"].get("StoredBytes", 0))
                f.first.append(elapsed)
                f.first_busy.append(busy)
                f.peaks.append(peak)
                again, _, peak, busy_again = timed(p)
                f.repeat.append(again)
                f.repeat_busy.append(busy_again)
                f.peaks.append(peak)
                line.append(f"jobs={jobs} first {elapsed:.2f}s ({elapsed / raw:.3f}, CPU {busy:.0%}, "
                            f"stored {stored / 1e6:.0f} MB), repeat {again:.2f}s ({again / raw:.3f}, CPU {busy_again:.0%})")  # fmt: skip
            print("; ".join(line), flush=True)
        med = statistics.median
        print()
        print(f"vault store: {args.store}; {len(names)} databases, {total / 1e6:.0f} MB; "
              f"raw dumps {raw_size / 1e6:.0f} MB; {os.cpu_count()} cores; medians of {args.rounds} rounds")  # fmt: skip
        print("| figure | seconds | ratio to raw (goal <= 0.7) | machine CPU busy |")
        print("|---|---|---|---|")
        print(
            f"| raw sequential `pg_dump -Fc > file` of the 4 | {med(raw_times):.2f} | 1 | {med(raw_busy):.0%} |"
        )
        for jobs in variants:
            f = figures[jobs]
            first = [t / r for t, r in zip(f.first, raw_times, strict=True)]
            repeat = [t / r for t, r in zip(f.repeat, raw_times, strict=True)]
            print(f"| dpvault first backup, DPVAULT_PG_DUMP_JOBS={jobs} | {med(f.first):.2f} | **{med(first):.3f}** "
                  f"({min(first):.3f}-{max(first):.3f}) | {med(f.first_busy):.0%} |")  # fmt: skip
            print(f"| dpvault repeat backup, DPVAULT_PG_DUMP_JOBS={jobs} | {med(f.repeat):.2f} | {med(repeat):.3f} "
                  f"({min(repeat):.3f}-{max(repeat):.3f}) | {med(f.repeat_busy):.0%} |")  # fmt: skip
        for jobs in variants:
            print(f"server RSS, jobs={jobs}: {baselines[jobs] / 1024:.0f} MiB before, "
                  f"{max(figures[jobs].peaks) / 1024:.0f} MiB peak")  # fmt: skip
    finally:
        for server in servers.values():
            server.stop()
        pg.stop()
        stack.close()


if __name__ == "__main__":
    main()

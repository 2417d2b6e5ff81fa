"""Backup benchmark: dpvault's backup of a large PostgreSQL database against a raw ``pg_dump -Fc > file``
of the same database, measured side by side in one run, plus the server's memory while it streams.

    .venv/bin/python -m bench.backup [--size-mb 600] [--rounds 2] [--store local|azure|s3]

Prints: raw pg_dump seconds, dpvault backup seconds (POST .../backup to job Completed, which includes
the SHA-256 and the pg_restore --list check), their ratio (goal <= 1.0), and the server's RSS before
and at peak during the backup (goal: flat, <= +64 MiB). Round 1 writes every chunk; later rounds of
the unchanged database find every chunk in the vault already. ``--store azure`` puts the vault in an
Azurite the bench starts (``s3``: moto's server, in this process -- slow, for function, not speed).
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
from collections.abc import Iterator
from pathlib import Path

from tests.support import PostgresServer, Server


@contextlib.contextmanager
def vault_store(kind: str) -> Iterator[tuple[list[str], dict[str, str]]]:
    """The server arguments and environment of a fresh vault store of ``kind``."""
    if kind == "local":
        yield [], {}
        return
    from tests.objectstores import Azurite, MotoS3, unique

    if kind == "azure":
        with Azurite() as azurite:
            container = azurite.make_container(unique("bench"))
            yield ["--vault-store", f"azure://{container}/vault"], azurite.environ()
        return
    with MotoS3() as s3:
        bucket = s3.make_bucket(unique("bench"))
        yield ["--vault-store", f"s3://{bucket}/vault"], s3.environ()


def rss_kib(pid: int) -> int:
    """Resident memory of a process and its children (pg_dump runs as a child)."""
    total = 0
    for p in [pid, *_children(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:
            pass
    return out


def server_rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def make_database(pg: PostgresServer, size_mb: int) -> str:
    name = f"bench_{uuid.uuid4().hex[:6]}"
    pg.create_database(name)
    rows = size_mb * 1024 * 1024 // 140
    print(f"creating a ~{size_mb} MB database ({rows:,} rows) ...", flush=True)
    pg.sql(
        name,
        f"""
        CREATE TABLE events (id bigint PRIMARY KEY, a text, b text, c text, n double precision);
        INSERT INTO events SELECT g, md5(g::text), md5((g * 7)::text), md5((g * 13)::text), random()
        FROM generate_series(1, {rows}) g;
        CREATE INDEX events_n ON events (n);
        """,
    )
    size = pg.sql(name, "SELECT pg_database_size(current_database())")[0][0]
    print(f"database size: {size / 1e6:.0f} MB", flush=True)
    return name


def raw_dump(pg: PostgresServer, database: str, pg_dump: str, target: Path) -> float:
    env = {**os.environ, "PGHOST": "127.0.0.1", "PGPORT": str(pg.port), "PGUSER": "postgres",
           "PGPASSWORD": pg.password, "PGDATABASE": database}  # fmt: skip
    started = time.perf_counter()
    with open(target, "wb") as out:
        subprocess.run([pg_dump, "-Fc", "--no-password"], stdout=out, env=env, check=True)
        out.flush()
        os.fsync(out.fileno())
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--store", choices=["local", "azure", "s3"], default="local")
    args = parser.parse_args()
    from dpvault.engines.postgres import find_tools

    tools = find_tools()
    assert tools, "pg_dump not found"
    work = Path(tempfile.mkdtemp(prefix="dpvault-bench-"))
    pg = PostgresServer(Path(tempfile.mkdtemp(prefix="dpvault-bench-pg-")))
    pg.start()
    stack = contextlib.ExitStack()
    store_args, environ = stack.enter_context(vault_store(args.store))
    server = Server(work / "server", args=["--no-access-log", *store_args], environ=environ)
    try:
        database = make_database(pg, args.size_mb)
        server.start()
        assert server.proc is not None
        with server.client() as client:
            from tests.integration.test_protection import Protected

            protected = Protected(server, client, pg, database, validation="ShallowValidation").create()
            assert protected.put()["status"] == "Succeeded"
            raw_times, dp_times, peaks, sizes = [], [], [], []
            baseline = server_rss(server.proc.pid)
            for round_no in range(args.rounds):
                raw = raw_dump(pg, database, tools.pg_dump, work / f"raw{round_no}.dump")
                raw_times.append(raw)
                samples: list[int] = []
                stop = threading.Event()

                def sample(stop: threading.Event = stop, samples: list[int] = samples) -> None:
                    while not stop.is_set():
                        samples.append(server_rss(server.proc.pid))  # type: ignore[union-attr]
                        time.sleep(0.1)

                sampler = threading.Thread(target=sample)
                sampler.start()
                started = time.perf_counter()
                job_id = protected.backup()
                job = protected.wait_job(job_id, timeout=3600)
                elapsed = time.perf_counter() - started
                stop.set()
                sampler.join()
                assert job["status"] == "Completed", job
                dp_times.append(elapsed)
                peaks.append(max(samples))
                sizes.append(int(job["extendedInfo"]["dataTransferredInBytes"]))
                print(f"round {round_no + 1}: raw pg_dump {raw:.2f}s, dpvault {elapsed:.2f}s, "
                      f"ratio {elapsed / raw:.3f}, server RSS peak {max(samples) / 1024:.0f} MiB", flush=True)  # fmt: skip
            raw_med = statistics.median(raw_times)
            print()
            print(f"vault store: {args.store}")
            print("| figure | value |")
            print("|---|---|")
            print(
                f"| database size | {pg.sql(database, 'SELECT pg_database_size(current_database())')[0][0] / 1e6:.0f} MB |"
            )
            print(f"| dump size | {sizes[-1] / 1e6:.0f} MB |")
            print(f"| raw `pg_dump -Fc > file` (median of {args.rounds}) | {raw_med:.2f} s |")
            print(f"| dpvault first backup (every chunk new), POST to job Completed | {dp_times[0]:.2f} s |")
            print(f"| ratio first backup / raw (goal <= 1.0) | {dp_times[0] / raw_times[0]:.3f} |")
            if len(dp_times) > 1:
                again = statistics.median(dp_times[1:])
                print(f"| dpvault repeat backups (unchanged database; median) | {again:.2f} s |")
                print(f"| ratio repeat / raw | {again / statistics.median(raw_times[1:]):.3f} |")
            print(f"| server RSS before backup | {baseline / 1024:.0f} MiB |")
            print(
                f"| server RSS peak during backup | {max(peaks) / 1024:.0f} MiB (+{(max(peaks) - baseline) / 1024:.0f} MiB) |"
            )
    finally:
        server.stop()
        pg.stop()
        stack.close()


if __name__ == "__main__":
    main()

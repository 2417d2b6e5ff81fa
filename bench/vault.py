"""Storage benchmark of vault format 2: what 30 daily backups of a changing ~1 GB database cost,
against one raw ``pg_dump -Fc`` file of the same database, measured in the same run.

    .venv/bin/python -m bench.vault [--size-mb 1000] [--days 30] [--workload mixed|random|both]

Workloads (the bench makes the changes; ~1 % of all rows change between two backups):

- ``mixed``: how OLTP databases with history change -- new rows appended to an event log (60 % of
  the changes), recent orders updated (30 %), customers updated at random (10 %);
- ``random``: 1 % of the event log's rows updated uniformly at random (the worst case for any
  chunk-level deduplication: every ~1 MiB chunk holds dozens of changed rows).

Prints per workload: the first backup's stored bytes / one ``pg_dump -Fc`` file (goal <= 1.0: zstd
beats pg_dump's gzip), the vault after all days / one ``pg_dump -Fc`` file of the last day (goal
<= 1.5), and the time of the last backup against a raw ``pg_dump -Fc > file``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from bench.backup import raw_dump
from tests.support import PostgresServer, Server

ROW = 150  # bytes a row of the event log costs, roughly


def make_database(pg: PostgresServer, size_mb: int) -> tuple[str, int]:
    name = f"vault_{uuid.uuid4().hex[:6]}"
    pg.create_database(name)
    events = size_mb * 1024 * 1024 * 70 // 100 // ROW
    orders = events * 25 // 70
    customers = max(1000, events * 5 // 70)
    print(f"creating a ~{size_mb} MB database ({events + orders + customers:,} rows) ...", flush=True)
    pg.sql(
        name,
        f"""
        CREATE TABLE customers (id int PRIMARY KEY, name text, email text, tier int);
        INSERT INTO customers SELECT g, 'customer ' || g, 'c' || g || '@example.com', g % 5 FROM generate_series(1, {customers}) g;
        CREATE TABLE orders (id bigint PRIMARY KEY, customer int, amount numeric(12,2), status text, note text);
        INSERT INTO orders SELECT g, 1 + g % {customers}, (g % 9973) / 7.0, 'shipped', md5(g::text)
        FROM generate_series(1, {orders}) g;
        CREATE TABLE events (id bigint PRIMARY KEY, kind text, payload text, at timestamptz, n double precision);
        INSERT INTO events SELECT g, 'kind' || (g % 17), md5(g::text) || md5((g * 7)::text), now(), random()
        FROM generate_series(1, {events}) g;
        CREATE INDEX events_at ON events (at);
        """,
    )
    return name, events + orders + customers


def change(pg: PostgresServer, database: str, rows: int, workload: str, day: int) -> None:
    """About 1 % of all rows changed, as ``workload`` changes them."""
    n = rows // 100
    if workload == "random":
        pg.sql(database, f"UPDATE events SET n = random() WHERE id IN "
                         f"(SELECT 1 + floor(random() * (SELECT max(id) FROM events))::bigint FROM generate_series(1, {n}))")  # fmt: skip
        return
    inserts, updates, customers = n * 60 // 100, n * 30 // 100, n * 10 // 100
    pg.sql(
        database,
        f"""
        INSERT INTO events SELECT m + g, 'kind' || (g % 17), md5((m + g)::text) || md5(g::text), now(), random()
        FROM (SELECT max(id) AS m FROM events) s, generate_series(1, {inserts}) g;
        UPDATE orders SET status = 'returned-{day}', amount = amount + 1
        WHERE id > (SELECT max(id) FROM orders) - {updates * 3} AND id % 3 = {day % 3};
        INSERT INTO orders SELECT m + g, 1 + g % 1000, g / 3.0, 'new', md5(g::text) FROM (SELECT max(id) AS m FROM orders) s,
        generate_series(1, {updates // 3}) g;
        UPDATE customers SET tier = tier + 1 WHERE id IN
        (SELECT 1 + floor(random() * (SELECT max(id) FROM customers))::int FROM generate_series(1, {customers}));
        """,
    )


def vault_bytes(server: Server) -> int:
    root = server.data_dir / "vault"
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def run(
    pg: PostgresServer, tools_pg_dump: str, workload: str, size_mb: int, days: int, work: Path
) -> dict[str, float]:
    from tests.integration.test_protection import Protected

    database, rows = make_database(pg, size_mb)
    server = Server(work / f"server-{workload}", args=["--no-access-log"])
    server.start()
    try:
        with server.client() as client:
            p = Protected(server, client, pg, database, validation="ShallowValidation").create()
            assert p.put()["status"] == "Succeeded"
            raw_first = work / "first.dump"
            raw_dump(pg, database, tools_pg_dump, raw_first)
            first_size = raw_first.stat().st_size
            figures: dict[str, float] = {}
            for day in range(1, days + 1):
                if day > 1:
                    change(pg, database, rows, workload, day)
                    subprocess.run(["true"], check=True)
                started = time.perf_counter()
                job = p.wait_job(p.backup(), timeout=3600)
                elapsed = time.perf_counter() - started
                assert job["status"] == "Completed", job
                stored = vault_bytes(server)
                if day == 1:
                    figures["first_ratio"] = stored / first_size
                    figures["first_backup_s"] = elapsed
                print(f"  day {day:2d}: backup {elapsed:6.2f} s, vault {stored / 1e6:8.1f} MB "
                      f"({stored / first_size:5.2f} x one pg_dump -Fc)", flush=True)  # fmt: skip
            last = work / "last.dump"
            raw_last = raw_dump(pg, database, tools_pg_dump, last)
            figures.update(
                dump_mb=last.stat().st_size / 1e6,
                vault_mb=vault_bytes(server) / 1e6,
                ratio=vault_bytes(server) / last.stat().st_size,
                last_backup_s=elapsed,
                raw_dump_s=raw_last,
            )
            return figures
    finally:
        server.stop()
        pg.sql("postgres", f"DROP DATABASE IF EXISTS {database}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--workload", choices=["mixed", "random", "both"], default="both")
    args = parser.parse_args()
    from dpvault.engines.postgres import find_tools

    tools = find_tools()
    assert tools, "pg_dump not found"
    work = Path(tempfile.mkdtemp(prefix="dpvault-bench-vault-"))
    pg = PostgresServer(Path(tempfile.mkdtemp(prefix="dpvault-bench-pg-")))
    pg.start()
    results = {}
    try:
        for workload in ("mixed", "random") if args.workload == "both" else (args.workload,):
            print(f"workload {workload}:", flush=True)
            results[workload] = run(pg, tools.pg_dump, workload, args.size_mb, args.days, work)
    finally:
        pg.stop()
    print()
    print(
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs, ~{args.size_mb} MB database, {args.days} daily backups"
    )
    print()
    print(
        "| workload | first backup / one pg_dump -Fc (goal <= 1.0) | vault after all days / one pg_dump -Fc (goal <= 1.5) | last backup / raw pg_dump -Fc |"
    )
    print("|---|---|---|---|")
    for workload, f in results.items():
        print(f"| {workload} | {f['first_ratio']:.2f} | {f['ratio']:.2f} ({f['vault_mb']:.0f} MB / {f['dump_mb']:.0f} MB) "
              f"| {f['last_backup_s'] / f['raw_dump_s']:.2f} ({f['last_backup_s']:.1f} s / {f['raw_dump_s']:.1f} s) |")  # fmt: skip


if __name__ == "__main__":
    main()

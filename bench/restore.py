"""Restore benchmark: dpvault's restore of a recovery point into a new database against a raw
``pg_restore --jobs N`` of the same archive into a new database, side by side in one run.

    .venv/bin/python -m bench.restore [--size-mb 300] [--rounds 2] [--store local|azure|s3]

dpvault's time runs from ``POST …/restore`` to the job Completed and includes what the raw restore
does not: re-hashing the archive against its recorded SHA-256 first, and creating the database.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from bench.backup import make_database, raw_dump, vault_store
from tests.integration.test_protection import Protected
from tests.integration.test_restore import finish, restore, restore_request, target_info
from tests.support import PostgresServer, Server


def raw_restore(pg: PostgresServer, archive: Path, pg_restore: str, jobs: int) -> float:
    name = f"raw_{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "PGHOST": "127.0.0.1",
        "PGPORT": str(pg.port),
        "PGUSER": "postgres",
        "PGPASSWORD": pg.password,
    }
    started = time.perf_counter()
    subprocess.run(["createdb", name], env=env, check=True)  # dpvault creates its target too
    subprocess.run(
        [pg_restore, "--no-owner", "--no-privileges", "--exit-on-error", f"--jobs={jobs}", f"--dbname={name}", str(archive)],
        env=env, check=True,
    )  # fmt: skip
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--store", choices=["local", "azure", "s3"], default="local")
    args = parser.parse_args()
    from dpvault.engines.postgres import find_tools

    tools = find_tools()
    assert tools, "pg_restore not found"
    jobs = max(1, min(4, os.cpu_count() or 1))
    pg = PostgresServer(Path(tempfile.mkdtemp(prefix="dpvault-bench-pg-")))
    pg.start()
    stack = contextlib.ExitStack()
    store_args, environ = stack.enter_context(vault_store(args.store))
    server = Server(
        Path(tempfile.mkdtemp(prefix="dpvault-bench-")) / "server",
        args=["--no-access-log", *store_args],
        environ=environ,
    )
    try:
        database = make_database(pg, args.size_mb)
        server.start()
        with server.client() as client:
            p = Protected(server, client, pg, database, validation="ShallowValidation").create()
            assert p.put()["status"] == "Succeeded"
            assert p.wait_job(p.backup(), timeout=3600)["status"] == "Completed"
            (rp,) = p.points()
            # the baseline restores what a user without dpvault would have: a raw `pg_dump -Fc` file
            archive = server.data_dir.parent / "raw.dump"
            raw_dump(pg, database, tools.pg_dump, archive)
            raws, dps = [], []
            for round_no in range(args.rounds):
                raw = raw_restore(pg, archive, tools.pg_restore, jobs)
                target = f"dpv_{uuid.uuid4().hex[:8]}"
                started = time.perf_counter()
                _op, final = finish(p, restore(p, restore_request(rp["name"], target_info(p, target))))
                job = p.wait_job(final.json()["jobId"], timeout=3600)
                elapsed = time.perf_counter() - started
                assert job["status"] == "Completed", job
                raws.append(raw)
                dps.append(elapsed)
                print(
                    f"round {round_no + 1}: raw pg_restore {raw:.2f}s, dpvault {elapsed:.2f}s, ratio {elapsed / raw:.3f}",
                    flush=True,
                )
            raw_med, dp_med = statistics.median(raws), statistics.median(dps)
            print()
            print(f"vault store: {args.store}")
            print("| figure | value |")
            print("|---|---|")
            print(f"| archive size | {archive.stat().st_size / 1e6:.0f} MB |")
            print(
                f"| raw `createdb` + `pg_restore --jobs={jobs}` (median of {args.rounds}) | {raw_med:.2f} s |"
            )
            print(f"| dpvault restore, POST to job Completed (median) | {dp_med:.2f} s |")
            print(f"| ratio dpvault / raw (goal <= 1.1) | {dp_med / raw_med:.3f} |")
    finally:
        server.stop()
        pg.stop()
        stack.close()


if __name__ == "__main__":
    main()

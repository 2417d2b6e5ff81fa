"""Blob container benchmark (issue 12): dpvault's vaulted backup of two Azurite containers against
an ``azcopy``-style raw download of the same blobs (``bench.blob_download``), side by side in one
run, then two incremental backups, with the server's memory.

    .venv/bin/python bench/blob_backup.py [--small 10000] [--large 10] [--large-mb 50] [--rounds 2]
        [--concurrency 16] [--profile]

Data, in a fresh Azurite: container ``small`` holds --small blobs of 1-8 KiB (base64 of random
bytes, so zstd gets them to ~3/4; content type, two metadata keys, index tags on every tenth) under
100 prefixes; container ``large`` holds --large blobs of --large-mb MB of random bytes.

Each round runs the baseline download, then a first dpvault backup (``POST …/backup`` to the job
Completed) of a new instance in a new vault (so every chunk is new); throughput = blob bytes /
seconds. Then, on the last round's instance:

- incremental A: 1 % of the blobs (by count) rewritten -- every 100th small blob gets new content
  and metadata (the large blobs are 0.1 % of the count; a 1 % sample holds 0.1 of them);
- incremental B: 1 % again, 99 other small blobs and one large blob with 1 MiB in its middle
  rewritten (Put Blob of the whole blob: its ETag changes, so the whole blob is read again).

For the incrementals the source mapping points at a byte-counting TCP proxy in front of Azurite:
"read from the source" is every byte of every HTTP response dpvault received (listings included),
against the blob bytes of the two containers. The job's own StoredBytes / DeduplicatedBytes are
printed too (dataTransferredInBytes is the point's size, unchanged blobs included).

``--profile``: after the server runs, the engine's ``dump_files`` is run in this process twice
under cProfile -- drained (source side only) and into a ``PackWriter`` on a scratch vault, as the
backup job does -- and the top functions are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import cProfile
import io
import json
import os
import pstats
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.integration.test_blob_containers import BLOB_TYPE, blob_instance
from tests.integration.test_sources import account_id, set_source
from tests.objectstores import Azurite
from tests.support import API, Env, Server, free_port, policy_body, wait_operation

SMALL, LARGE = "small", "large"
MB = 1_000_000


# -- data ----------------------------------------------------------------------------------------


def small_blob(rng: random.Random, i: int, generation: int = 0) -> tuple[str, bytes, dict[str, Any]]:
    size = rng.randint(1024, 8192)
    data = base64.b64encode(rng.randbytes(size * 3 // 4 + 3))[:size]
    extra: dict[str, Any] = {
        "metadata": {"index": str(i), "generation": str(generation)},
        "content_type": "application/octet-stream" if i % 3 else "text/plain",
    }
    if i % 10 == 0:
        extra["tags"] = {"kind": "bench", "n": str(i)}
    return f"p{i % 100:02d}/blob-{i:06d}.b64", data, extra


def large_name(i: int) -> str:
    return f"big/blob-{i:02d}.bin"


async def populate(connection_string: str, small: int, large: int, large_mb: int) -> None:
    from azure.storage.blob import ContentSettings
    from azure.storage.blob.aio import BlobServiceClient

    async with BlobServiceClient.from_connection_string(connection_string) as service:
        for name in (SMALL, LARGE):
            await service.create_container(name, metadata={"bench": "blob_backup"})
        gate = asyncio.Semaphore(32)
        rng = random.Random(12)
        c_small = service.get_container_client(SMALL)

        async def put_small(i: int) -> None:
            name, data, extra = small_blob(rng, i)
            settings = ContentSettings(content_type=extra.pop("content_type"))
            async with gate:
                await c_small.upload_blob(name, data, content_settings=settings, **extra)

        await asyncio.gather(*(put_small(i) for i in range(small)))
        c_large = service.get_container_client(LARGE)
        for i in range(large):
            await c_large.upload_blob(
                large_name(i), os.urandom(large_mb * MB), metadata={"index": str(i)}, max_concurrency=4
            )


async def change(connection_string: str, small: list[int], large: list[int], generation: int) -> int:
    """Rewrite the small blobs numbered ``small`` (new content, metadata) and, in each large blob
    numbered ``large``, 1 MiB in the middle (the whole blob put again); the bytes rewritten."""
    from azure.storage.blob import ContentSettings
    from azure.storage.blob.aio import BlobServiceClient

    changed = 0
    rng = random.Random(1000 + generation)
    async with BlobServiceClient.from_connection_string(connection_string) as service:
        c_small = service.get_container_client(SMALL)
        for i in small:
            name, data, extra = small_blob(rng, i, generation)
            settings = ContentSettings(content_type=extra.pop("content_type"))
            await c_small.upload_blob(name, data, content_settings=settings, overwrite=True, **extra)
            changed += len(data)
        c_large = service.get_container_client(LARGE)
        for i in large:
            blob = c_large.get_blob_client(large_name(i))
            data = bytearray(await (await blob.download_blob()).readall())
            middle = len(data) // 2
            data[middle : middle + (1 << 20)] = os.urandom(min(1 << 20, len(data) - middle))
            await blob.upload_blob(bytes(data), overwrite=True, metadata={"index": str(i)}, max_concurrency=4)
            changed += len(data)
    return changed


def blob_bytes(connection_string: str) -> tuple[int, int]:
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(connection_string)
    count = size = 0
    for name in (SMALL, LARGE):
        for props in service.get_container_client(name).list_blobs():
            count += 1
            size += int(props.size)
    return count, size


# -- measuring -----------------------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    with contextlib.suppress(FileNotFoundError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Sampler:
    """The server's RSS every 50 ms while in the ``with``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(rss_kib(self.pid))
            time.sleep(0.05)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mib(self) -> float:
        return max(self.samples, default=0) / 1024


class CountingProxy:
    """A TCP proxy to Azurite on a free port, in a thread: counts the bytes each way."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.down = 0  # Azurite -> client: responses (listings, blob content, headers)
        self.up = 0
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, downstream: bool) -> None:
            try:
                while data := await reader.read(1 << 16):
                    if downstream:
                        self.down += len(data)
                    else:
                        self.up += len(data)
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    writer.close()

        async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
            self.connections += 1
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            await asyncio.gather(pipe(client_r, up_w, False), pipe(up_r, client_w, True))

        async def serve() -> None:
            server = await asyncio.start_server(handle, "127.0.0.1", self.port)
            self._ready.set()
            async with server:
                await server.serve_forever()

        with contextlib.suppress(asyncio.CancelledError, RuntimeError):
            self._loop.run_until_complete(serve())

    def start(self) -> CountingProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def reset(self) -> None:
        self.down = self.up = self.connections = 0

    def stop(self) -> None:
        for task in asyncio.all_tasks(self._loop):
            self._loop.call_soon_threadsafe(task.cancel)
        self._thread.join(5)


def via(connection_string: str, port: int, proxy_port: int) -> str:
    return connection_string.replace(f"127.0.0.1:{port}/", f"127.0.0.1:{proxy_port}/")


def baseline(connection_string: str, concurrency: int, azurite_pid: int) -> dict[str, Any]:
    before = cpu_seconds(azurite_pid)
    out = subprocess.run(
        [sys.executable, "-m", "bench.blob_download", "--containers", f"{SMALL},{LARGE}",
         "--concurrency", str(concurrency)],
        input=connection_string, capture_output=True, text=True, check=True,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(out.stdout)
    result["azurite_cpu"] = cpu_seconds(azurite_pid) - before
    return result


class Bench:
    """A vault with a blob policy and instances over the two containers, on the real server."""

    def __init__(self, server: Server, client: httpx.Client, account: str) -> None:
        self.server, self.client, self.account = server, client, account

    def new_instance(self) -> tuple[Env, str]:
        env = Env(self.client).create()
        r = self.client.put(
            f"{env.vault_path}/backupPolicies/blobs?api-version={API}", json=policy_body(BLOB_TYPE)
        )
        assert r.status_code in (200, 201), r.text
        body = blob_instance(f"{env.vault_path}/backupPolicies/blobs", self.account, [SMALL, LARGE])
        r = self.client.put(f"{env.instance_path('blobs')}?api-version={API}", json=body)
        assert r.status_code in (200, 201), r.text
        op = wait_operation(self.client, r.headers["Azure-AsyncOperation"], timeout=120)
        assert op["status"] == "Succeeded", op
        return env, env.instance_path("blobs")

    def backup(self, env: Env, instance: str, azurite_pid: int) -> dict[str, Any]:
        assert self.server.proc is not None
        pid = self.server.proc.pid
        cpu0, az0 = cpu_seconds(pid), cpu_seconds(azurite_pid)
        rss0 = rss_kib(pid) / 1024
        with Sampler(pid) as sampler:
            started = time.perf_counter()
            r = self.client.post(f"{instance}/backup?api-version={API}",
                                 json={"backupRuleOptions": {"ruleName": "BackupWeekly"}})  # fmt: skip
            assert r.status_code == 202, r.text
            assert wait_operation(self.client, r.headers["Azure-AsyncOperation"])["status"] == "Succeeded"
            job_id = self.client.get(r.headers["Location"]).json()["jobId"]
            while True:
                job = self.client.get(f"{env.vault_path}/backupJobs/{job_id}?api-version={API}").json()[
                    "properties"
                ]
                if job["status"] not in ("InProgress", "Started"):
                    break
                time.sleep(0.05)
            seconds = time.perf_counter() - started
        assert job["status"] == "Completed", job
        details = job["extendedInfo"]["additionalDetails"]
        return {
            "seconds": seconds,
            "stored": int(details["StoredBytes"]),
            "deduplicated": int(details["DeduplicatedBytes"]),
            "transferred": int(job["extendedInfo"]["dataTransferredInBytes"]),
            "rss_before": rss0,
            "rss_peak": sampler.peak_mib,
            "cpu": cpu_seconds(pid) - cpu0,
            "azurite_cpu": cpu_seconds(azurite_pid) - az0,
        }


# -- profile -------------------------------------------------------------------------------------


def _engine(use_env_settings: bool = True) -> Any:
    """The blob engine; ``use_env_settings=False``: its storage client without azure-core's
    environment lookups (aiohttp's ``trust_env``: a thread hop for the proxy variables and one for
    ~/.netrc on every request) -- an experiment, to size that cost."""
    from dpvault.engines.blobs.engine import BlobContainerEngine

    if use_env_settings:
        return BlobContainerEngine()

    class NoEnvSettings(BlobContainerEngine):
        def _client(self, params: Any) -> Any:
            from azure.storage.blob.aio import BlobServiceClient

            return BlobServiceClient.from_connection_string(
                params["connection_string"], connection_timeout=self.connect_timeout,
                retry_total=3, initial_backoff=0.5, increment_base=2, use_env_settings=False,
            )  # fmt: skip

    return NoEnvSettings()


async def _list(connection_string: str, include: list[str] | None) -> float:
    from azure.storage.blob.aio import BlobServiceClient

    started = time.perf_counter()
    async with BlobServiceClient.from_connection_string(connection_string) as service:
        for name in (SMALL, LARGE):
            [p async for p in service.get_container_client(name).list_blobs(include=include)]
    return time.perf_counter() - started


async def _engine_run(connection_string: str, engine: Any, into_vault: bool) -> float:
    """The engine's ``dump_files`` as the backup job runs it (a first backup: nothing to reuse):
    drained, or into a PackWriter on a scratch vault (SQLite state, local datastore) through the
    job's own ``_store_files``."""
    params = {**engine.parse_secret(connection_string), "containers": f"{SMALL}\n{LARGE}", "vaulted": "1"}
    started = time.perf_counter()
    if not into_vault:
        async for item in engine.dump_files(params, {}):
            if item.chunks is not None:
                async for _ in item.chunks:
                    pass
        return time.perf_counter() - started
    from dpvault.datastores.urls import open_datastore
    from dpvault.protection.backup import _store_files
    from dpvault.store import Store
    from dpvault.vault.keys import DataKey
    from dpvault.vault.packs import PackWriter

    scratch = Path(tempfile.mkdtemp(prefix="dpvault-bench-profile-"))
    try:
        store = await Store.open(f"sqlite:///{scratch / 'state.db'}")
        datastore = open_datastore(
            "", data_dir_default=scratch / "vault", heartbeat=5, tmp_dir=scratch / "tmp"
        )
        vault = "/subscriptions/s/resourcegroups/rg/providers/microsoft.dataprotection/backupvaults/bench"
        writer = PackWriter(store, datastore, vault, DataKey("bench", os.urandom(64)), writer="bench")
        started = time.perf_counter()
        await _store_files(writer, engine, engine.dump_files(params, {}), {})
        await writer.finish()
        return time.perf_counter() - started
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def profile(
    connection_string: str, concurrency: int, azurite_pid: int, total: int, top: int, out: Path
) -> None:
    """Where a first backup's time goes, phase by phase, in this process (no server, no API), next
    to the baseline run at the same moment; then cProfile of the engine into a PackWriter."""
    import uvloop

    base = baseline(connection_string, concurrency, azurite_pid)["seconds"]
    phases = [
        ("baseline download (subprocess, for reference)", base),
        ("listing, plain (what the baseline lists)", uvloop.run(_list(connection_string, None))),
        ("listing with metadata + tags (what the engine lists)", uvloop.run(_list(connection_string, ["metadata", "tags"]))),
        ("engine dump_files, drained (source side only)", uvloop.run(_engine_run(connection_string, _engine(), False))),
        ("… the same, use_env_settings=False", uvloop.run(_engine_run(connection_string, _engine(False), False))),
        ("engine dump_files into a PackWriter (the backup job's path)", uvloop.run(_engine_run(connection_string, _engine(), True))),
        ("… the same, use_env_settings=False", uvloop.run(_engine_run(connection_string, _engine(False), True))),
    ]  # fmt: skip
    print("\n### phases, in this process (uvloop), each run alone\n")
    print("| phase | seconds | MB/s |")
    print("|---|---|---|")
    for label, seconds in phases:
        print(f"| {label} | {seconds:.2f} | {total / MB / seconds:.1f} |")
    profiler = cProfile.Profile()
    profiler.enable()
    seconds = uvloop.run(_engine_run(connection_string, _engine(), True))
    profiler.disable()
    profiler.dump_stats(out)
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(
        r"dpvault/|list_blobs_helper|_download_async|aiohttp/client.py", top
    )
    print(
        f"\n### cProfile of dump_files into a PackWriter: {seconds:.2f} s under the profiler (saved: {out})\n"
    )
    print("\n".join(line for line in text.getvalue().splitlines() if line.strip()))


# -- main ----------------------------------------------------------------------------------------


def fmt_mb(n: float) -> str:
    return f"{n / MB:,.1f} MB"


@contextlib.contextmanager
def started(azurite: Azurite) -> Iterator[Azurite]:
    try:
        yield azurite.start()
    finally:
        azurite.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=10_000, help="small blobs (1-8 KiB)")
    parser.add_argument("--large", type=int, default=10, help="large blobs")
    parser.add_argument("--large-mb", type=int, default=50, help="size of a large blob, MB")
    parser.add_argument("--rounds", type=int, default=2, help="baseline + first backup, alternated")
    parser.add_argument("--concurrency", type=int, default=16, help="the baseline's downloads in flight")
    parser.add_argument("--profile", action="store_true", help="phases and cProfile in-process afterwards")
    parser.add_argument("--profile-only", action="store_true", help="no server: only --profile's part")
    parser.add_argument("--profile-top", type=int, default=25)
    parser.add_argument("--profile-out", type=Path, default=Path(tempfile.gettempdir()) / "blob_backup.prof")
    args = parser.parse_args()

    with started(Azurite()) as azurite:
        assert azurite._proc is not None
        cs = azurite.connection_string
        print(
            f"populating Azurite: {args.small:,} small blobs, {args.large} x {args.large_mb} MB ...",
            flush=True,
        )
        t = time.perf_counter()
        asyncio.run(populate(cs, args.small, args.large, args.large_mb))
        count, total = blob_bytes(cs)
        print(f"  {count:,} blobs, {fmt_mb(total)} in {time.perf_counter() - t:.1f} s", flush=True)
        if not args.profile_only:
            run_server(args, azurite, count, total)
        if args.profile or args.profile_only:
            profile(cs, args.concurrency, azurite._proc.pid, total, args.profile_top, args.profile_out)


def run_server(args: argparse.Namespace, azurite: Azurite, count: int, total: int) -> None:
    assert azurite._proc is not None
    az_pid, cs = azurite._proc.pid, azurite.connection_string
    proxy = CountingProxy(azurite.port).start()
    work = Path(tempfile.mkdtemp(prefix="dpvault-bench-blobs-"))
    server = Server(work / "server", args=["--no-access-log"])
    server.start()
    account = account_id()
    try:
        with server.client() as client:
            bench = Bench(server, client, account)
            set_source(server, account, cs)
            baseline(cs, args.concurrency, az_pid)  # warm-up: Azurite's and the OS's caches
            bases, firsts = [], []
            env = instance = None
            for round_no in range(args.rounds):
                base = baseline(cs, args.concurrency, az_pid)
                assert base["bytes"] == total, (base, total)
                env, instance = bench.new_instance()  # a new vault: every chunk is new
                first = bench.backup(env, instance, az_pid)
                bases.append(base)
                firsts.append(first)
                print(
                    f"round {round_no + 1}: baseline {base['seconds']:.2f} s ({total / MB / base['seconds']:.1f} MB/s), "
                    f"dpvault {first['seconds']:.2f} s ({total / MB / first['seconds']:.1f} MB/s), "
                    f"ratio {base['seconds'] / first['seconds']:.3f}, RSS peak {first['rss_peak']:.0f} MiB",
                    flush=True,
                )
            assert env is not None and instance is not None
            # incrementals of the last instance, reading through the counting proxy
            set_source(server, account, via(cs, azurite.port, proxy.port))
            step = max(1, count // 100)  # 1 % of the blobs
            picks = list(range(0, args.small, max(1, args.small // step)))[:step]
            plans = []
            if picks:
                plans.append(("A", picks, []))
            if args.large:
                plans.append(("B", [i + 1 for i in picks[: step - 1]], [0]))
            incs = []
            for label, small, large in plans:
                rewritten = asyncio.run(change(cs, small, large, generation=len(incs) + 1))
                proxy.reset()
                inc = bench.backup(env, instance, az_pid)
                inc.update(
                    label=label, small=len(small), large=len(large), rewritten=rewritten, read=proxy.down
                )
                incs.append(inc)
                print(
                    f"incremental {label}: {len(small)} small + {len(large)} large blobs changed "
                    f"({fmt_mb(rewritten)}), {inc['seconds']:.2f} s, read from the source {fmt_mb(proxy.down)} "
                    f"({proxy.down / total:.2%}), stored {fmt_mb(inc['stored'])}",
                    flush=True,
                )
            set_source(server, account, cs)
        report(args, count, total, bases, firsts, incs)
    finally:
        server.stop()
        proxy.stop()
        shutil.rmtree(work, ignore_errors=True)


def report(
    args: argparse.Namespace,
    count: int,
    total: int,
    bases: list[dict[str, Any]],
    firsts: list[dict[str, Any]],
    incs: list[dict[str, Any]],
) -> None:
    b = statistics.median(x["seconds"] for x in bases)
    d = statistics.median(x["seconds"] for x in firsts)
    ratios = [x["seconds"] / y["seconds"] for x, y in zip(bases, firsts, strict=True)]
    n = len(bases)
    print()
    print(
        f"data: {count:,} blobs, {fmt_mb(total)} ({args.small:,} small of 1-8 KiB, {args.large} x {args.large_mb} MB)"
    )
    print("| figure | value |")
    print("|---|---|")
    print(f"| baseline: list + download, {args.concurrency} in flight (median of {n}) | {b:.2f} s, **{total / MB / b:.1f} MB/s** |")  # fmt: skip
    print(
        f"| dpvault first backup, POST to job Completed (median of {n}) | {d:.2f} s, **{total / MB / d:.1f} MB/s** |"
    )
    print(f"| throughput dpvault / baseline (goal >= 0.8) | **{b / d:.2f}** (rounds: {', '.join(f'{r:.2f}' for r in ratios)}) |")  # fmt: skip
    print(
        f"| … of which the baseline's listing (plain, median) | {statistics.median(x['list_seconds'] for x in bases):.2f} s |"
    )
    print(f"| baseline CPU: script / Azurite (median) | {statistics.median(x['cpu_seconds'] for x in bases):.1f} s / "
          f"{statistics.median(x['azurite_cpu'] for x in bases):.1f} s |")  # fmt: skip
    print(f"| dpvault CPU: server / Azurite (median) | {statistics.median(x['cpu'] for x in firsts):.1f} s / "
          f"{statistics.median(x['azurite_cpu'] for x in firsts):.1f} s |")  # fmt: skip
    base_cpu = statistics.median(x["cpu_seconds"] + x["azurite_cpu"] for x in bases)
    dp_cpu = statistics.median(x["cpu"] + x["azurite_cpu"] for x in firsts)
    print(f"| CPU of the whole download, baseline / dpvault (both with Azurite's) | {base_cpu:.1f} s / {dp_cpu:.1f} s "
          f"= {base_cpu / dp_cpu:.2f} |")  # fmt: skip
    print(f"| first backup stored (zstd, sealed) | {fmt_mb(firsts[-1]['stored'])} |")
    peaks = " / ".join(f"{x['rss_peak']:.0f}" for x in firsts)
    print(f"| server RSS before the first round / peak during each first backup | {firsts[0]['rss_before']:.0f} / {peaks} MiB |")  # fmt: skip
    for inc in incs:
        what = f"{inc['small']} small" + (f" + {inc['large']} large (1 MiB changed)" if inc["large"] else "")
        print(f"| incremental {inc['label']}: {what} of {count:,} blobs changed | {inc['seconds']:.2f} s "
              f"({inc['seconds'] / d:.2f} of the first) |")  # fmt: skip
        print(f"| … read from the source (responses, listings incl.) / blob bytes (goal <= 5 %) | "
              f"{fmt_mb(inc['read'])} / {fmt_mb(total)} = **{inc['read'] / total:.2%}** (rewritten: {inc['rewritten'] / total:.2%}) |")  # fmt: skip
        print(f"| … StoredBytes / DeduplicatedBytes / dataTransferredInBytes | {fmt_mb(inc['stored'])} / "
              f"{fmt_mb(inc['deduplicated'])} / {fmt_mb(inc['transferred'])} |")  # fmt: skip
        print(f"| … server RSS peak | {inc['rss_peak']:.0f} MiB |")


if __name__ == "__main__":
    main()

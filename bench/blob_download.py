"""The baseline of ``bench.blob_backup``: an ``azcopy``-style raw download of every blob of some
containers with a plain ``azure-storage-blob`` async script -- list each container, then download
every blob with CONCURRENCY downloads in flight, reading each fully (streamed in the SDK's chunks)
and checking nothing but its MD5 (what ``azcopy copy --check-md5`` computes), writing nothing.

    .venv/bin/python -m bench.blob_download --containers c1,c2 [--concurrency 16] < connection-string

Prints one JSON line: blobs, bytes, seconds (client created to the last byte read, listings
included), list_seconds, and the process's CPU seconds and peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import resource
import sys
import time
from typing import Any


async def download_all(connection_string: str, containers: list[str], concurrency: int) -> dict[str, Any]:
    from azure.storage.blob.aio import BlobServiceClient  # imported before the clock starts (main)

    started = time.perf_counter()
    total = 0
    count = 0
    async with BlobServiceClient.from_connection_string(connection_string) as service:
        todo: asyncio.Queue[tuple[str, str] | None] = asyncio.Queue()
        for name in containers:
            async for props in service.get_container_client(name).list_blobs():
                todo.put_nowait((name, props.name))
        listed = time.perf_counter() - started

        async def worker() -> None:
            nonlocal total, count
            while (item := todo.get_nowait() if not todo.empty() else None) is not None:
                stream = await service.get_blob_client(*item).download_blob()
                md5 = hashlib.md5(usedforsecurity=False)
                async for chunk in stream.chunks():
                    md5.update(chunk)
                    total += len(chunk)
                md5.digest()
                count += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "blobs": count,
        "bytes": total,
        "seconds": time.perf_counter() - started,
        "list_seconds": listed,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "maxrss_kib": usage.ru_maxrss,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--containers", required=True, help="comma-separated container names")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    connection_string = sys.stdin.read().strip()
    import azure.storage.blob.aio  # noqa: F401 - not timed: the server has its SDK imported too

    try:
        import uvloop

        uvloop.install()  # dpvault serves on uvloop too
    except ImportError:
        pass
    result = asyncio.run(download_all(connection_string, args.containers.split(","), args.concurrency))
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""The other client of the hostile-client tests, in its own process (so the attacker's threads and
the test's GIL do not count in its figures): it connects, warms up, prints ``ready`` and waits for a
line on standard input (the attack starts meanwhile), then makes N sequential GETs on its one
kept-alive HTTPS connection and prints their latencies (ms) as JSON.

    python -m tests.reliability.latency_probe --port P --ca CA --token T --path /… --count N
"""

from __future__ import annotations

import argparse
import http.client
import json
import ssl
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--count", type=int, default=300)
    args = parser.parse_args()
    context = ssl.create_default_context(cafile=args.ca)
    conn = http.client.HTTPSConnection("127.0.0.1", args.port, context=context, timeout=30)
    headers = {"Authorization": f"Bearer {args.token}"}

    def get() -> float:
        started = time.perf_counter()
        conn.request("GET", args.path, headers=headers)
        response = conn.getresponse()
        response.read()
        assert response.status == 200, response.status
        return (time.perf_counter() - started) * 1000

    for _ in range(20):  # the connection, the handshake, the server's caches
        get()
    print("ready", flush=True)
    sys.stdin.readline()
    try:  # kept alive while the attack started? (the server may have closed it meanwhile)
        get()
    except (OSError, http.client.HTTPException):
        conn.close()
        get()
    latencies = [get() for _ in range(args.count)]
    conn.close()
    print(json.dumps(latencies))


if __name__ == "__main__":
    main()

"""The floor: the least an ASGI app on dpvault's server stack (uvicorn, uvloop, httptools, TLS) can
do for a PUT — answer a static 201 JSON of the size of a backup instance. dpvault ÷ floor says how
much of the budget dpvault's own work takes.

    python -m bench.floor --port P --cert CERT --key KEY
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import uvicorn

BODY = json.dumps({"id": "/subscriptions/x/resourceGroups/rg/providers/Microsoft.DataProtection/backupVaults/v/backupInstances/bi",
                   "name": "bi", "type": "Microsoft.DataProtection/backupVaults/backupInstances",
                   "properties": {"pad": "x" * 1500}}).encode()  # fmt: skip
HEADERS = [
    (b"content-type", b"application/json; charset=utf-8"),
    (b"content-length", str(len(BODY)).encode()),
]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:  # read the request body, as a real handler must
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 201, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, loop="uvloop", http="httptools", access_log=False,
                log_level="warning", ssl_certfile=args.cert, ssl_keyfile=args.key)  # fmt: skip


if __name__ == "__main__":
    main()

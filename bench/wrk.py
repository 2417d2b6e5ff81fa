"""Running wrk (Debian's wrk 4.1) with a Lua script, pinned to its own CPU, and reading its results."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPORT = """
done = function(summary, latency, requests)
  local out = string.format('{"requests": %d, "duration_us": %d, "errors": %d, "status_errors": %d, '
    .. '"p50_us": %d, "p99_us": %d, "mean_us": %f}',
    summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, latency:percentile(50), latency:percentile(99), latency.mean)
  io.stderr:write("WRKJSON " .. out .. "\\n")
end
"""


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int


def available() -> bool:
    return shutil.which("wrk") is not None


def cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def run(
    url: str,
    script: str,
    *,
    threads: int = 1,
    connections: int = 16,
    seconds: int = 10,
    cpu: int | None = None,
) -> Result:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script + REPORT)
        path = f.name
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", path, url]
    if cpu is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", str(cpu), *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    Path(path).unlink()
    match = re.search(r"WRKJSON (\{.*\})", proc.stderr)
    if not match:
        raise RuntimeError(f"wrk printed no summary:\n{proc.stdout}\n{proc.stderr}")
    data = json.loads(match.group(1))
    seconds_run = data["duration_us"] / 1e6
    return Result(
        rps=data["requests"] / seconds_run,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        requests=data["requests"],
        errors=data["errors"] + data["status_errors"],
    )


def lua_put(
    path_prefix: str, body: str, headers: dict[str, str], suffix: str = "?api-version=2023-01-01"
) -> str:
    """PUTs to ``<prefix><thread>-<n><suffix>``: a new name each time (creates, not updates)."""
    header_lines = "\n".join(f'wrk.headers["{k}"] = {json.dumps(v)}' for k, v in headers.items())
    return f"""
wrk.method = "PUT"
wrk.body = {json.dumps(body)}
{header_lines}
local threads = 0
setup = function(thread) threads = threads + 1; thread:set("tid", threads) end
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, "{path_prefix}" .. tostring(tid) .. "-" .. tostring(n) .. "{suffix}")
end
"""


def lua_get(headers: dict[str, str]) -> str:
    return "\n".join(f'wrk.headers["{k}"] = {json.dumps(v)}' for k, v in headers.items())

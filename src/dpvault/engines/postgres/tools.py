"""pg_dump and pg_restore: where they are, their version, and the environment they run in.

pg_dump refuses servers of a newer major version than itself, so the tools are found (or
configured), their version is checked against the server's, and both versions are recorded.
Connection parameters reach the tools through ``PG*`` environment variables: the password never
appears on a command line, in a log or in a job.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from dpvault.errors import UserError

_VERSION = re.compile(r"(\d+)(?:\.(\d+))?")


@dataclass(frozen=True)
class Tools:
    pg_dump: str
    pg_restore: str
    version: str
    major: int


def _version_of(binary: str) -> tuple[str, int]:
    # The binary is the operator's configured or found pg_dump, not request input.
    out = subprocess.run(  # noqa: S603
        [binary, "--version"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    match = _VERSION.search(out.split(")")[-1]) or _VERSION.search(out)
    if match is None:
        raise RuntimeError(f"cannot read the version of {binary}: {out!r}")
    return match.group(0), int(match.group(1))


def find_tools(pg_dump: str | None = None) -> Tools | None:
    """pg_dump/pg_restore: the configured path, else the newest Debian install, else PATH."""
    candidates: list[str] = []
    if pg_dump:
        candidates.append(pg_dump)
    candidates += [
        str(p / "pg_dump")
        for p in sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_major_of_dir, reverse=True)
    ]
    found = shutil.which("pg_dump")
    if found:
        candidates.append(found)
    for candidate in candidates:
        path = Path(candidate)
        restore = path.with_name("pg_restore")
        if path.is_file() and os.access(path, os.X_OK) and restore.is_file():
            version, major = _version_of(str(path))
            return Tools(str(path), str(restore), version, major)
    return None


def _major_of_dir(path: Path) -> int:
    try:
        return int(path.parent.name)
    except ValueError:
        return 0


def require(tools: Tools | None) -> Tools:
    if tools is None:
        raise UserError(
            "UserErrorPgDumpNotFound",
            "No pg_dump is installed where dpvault runs.",
            "Install the PostgreSQL client tools (apt-get install postgresql-client) or pass serve --pg-dump PATH.",
        )
    return tools


def tool_env(params: dict[str, str]) -> dict[str, str]:
    """The whole environment of pg_dump and pg_restore: the connection and little else, so
    nothing of dpvault's own (DPVAULT_SECRETS_KEY, cloud credentials, a PGPASSFILE) reaches them,
    and messages are in English (their stderr becomes user-facing errors)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "PGPASSFILE": os.devnull}
    if "TZ" in os.environ:
        env["TZ"] = os.environ["TZ"]
    names = {
        "host": "PGHOST",
        "hostaddr": "PGHOSTADDR",
        "port": "PGPORT",
        "dbname": "PGDATABASE",
        "user": "PGUSER",
        "password": "PGPASSWORD",
        "sslmode": "PGSSLMODE",
        "target_session_attrs": "PGTARGETSESSIONATTRS",
        "connect_timeout": "PGCONNECT_TIMEOUT",
    }
    for key, var in names.items():
        if params.get(key):
            env[var] = params[key]
    env.setdefault("PGCONNECT_TIMEOUT", "10")
    env["PGAPPNAME"] = "dpvault"
    return env


def stderr_detail(stderr: str, params: dict[str, str], fallback: str) -> str:
    """The last line a PostgreSQL tool wrote to stderr (what it failed on), password masked."""
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else fallback).replace(params.get("password") or "\0", "***")

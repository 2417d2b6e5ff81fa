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


class ToolsError(RuntimeError):
    """A configured pg_dump that cannot be used (the message says why)."""


def _version_of(binary: str) -> tuple[str, int]:
    # The binary is the operator's configured or found pg_dump, not request input.
    try:
        done = subprocess.run(  # noqa: S603
            [binary, "--version"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise ToolsError(f"{binary} does not run ({type(exc).__name__}: {exc})") from None
    if done.returncode != 0:
        # e.g. Debian's pg_wrapper (/usr/bin/pg_dump) with no postgresql-client-N installed
        said = (done.stderr or done.stdout).strip().splitlines()
        raise ToolsError(f"{binary} --version failed: {said[-1] if said else f'exit {done.returncode}'}")
    out = done.stdout
    match = _VERSION.search(out.split(")")[-1]) or _VERSION.search(out)
    if match is None:
        raise ToolsError(f"cannot read the version of {binary}: {out.strip()[:100]!r}")
    return match.group(0), int(match.group(1))


def _probe(candidate: str) -> Tools:
    path = Path(candidate)
    if not path.exists():
        raise ToolsError("no such file")
    if not path.is_file() or not os.access(path, os.X_OK):
        raise ToolsError("not an executable file")
    restore = path.with_name("pg_restore")
    if not restore.is_file():
        raise ToolsError(f"no pg_restore beside it ({restore})")
    version, major = _version_of(str(path))
    return Tools(str(path), str(restore), version, major)


def find_tools(pg_dump: str | None = None, *, search: Path = Path("/usr/lib/postgresql")) -> Tools | None:
    """pg_dump/pg_restore: the configured path, which must work (ToolsError: never silently
    another); else the newest Debian install under ``search`` that works, else the one on PATH.
    Found ones that do not run (Debian's pg_wrapper with no client installed) are passed over."""
    if pg_dump:
        return _probe(pg_dump)
    candidates = [str(p / "pg_dump") for p in sorted(search.glob("*/bin"), key=_major_of_dir, reverse=True)]
    found = shutil.which("pg_dump")
    if found:
        candidates.append(found)
    for candidate in candidates:
        try:
            return _probe(candidate)
        except ToolsError:
            continue
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

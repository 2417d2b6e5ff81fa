"""Start-up checks for ``serve`` and ``worker``: every mistake an operator can make on the command
line ends in one line on stderr and a non-zero exit, before anything says "listening".

Order: options (ports, webhooks), the data dir (created 0700; warned about when others may write
to it), the state database (opened and migrated), pg_dump (a configured one must work), and last the
listening socket (bound here, so a busy port fails before the banner; uvicorn serves on it).
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import stat
import sys
from pathlib import Path
from typing import Any, NoReturn

from dpvault.cli.common import err


def fail(message: str, code: int = 1) -> NoReturn:
    """One line on stderr, then exit ``code``."""
    import typer

    err.print(f"dpvault: {message}", highlight=False, markup=False)
    raise typer.Exit(code)


def warn(message: str) -> None:
    err.print(f"dpvault: warning: {message}", highlight=False, markup=False)


def check_port(port: int, option: str = "--port") -> int:
    if not 0 <= port <= 65535:
        fail(f"{option} {port} is not a TCP port (1-65535, or 0 for any free port)", 2)
    return port


def check_webhooks(urls: list[str] | None) -> tuple[str, ...]:
    from dpvault.alerts import check_webhook

    out = []
    for url in urls or ():
        try:
            out.append(check_webhook(url))
        except ValueError as exc:
            fail(f"--alert-webhook: {exc}", 2)
    return tuple(out)


# What the data dir holds that nobody else may read (older versions created some 0644).
_PRIVATE = ("state.db", "state.db-wal", "state.db-shm", "identity", "tls")


def prepare_data_dir(path: Path) -> Path:
    """The data dir, resolved and created 0700 (with the process umask 077, so everything dpvault
    creates in it is private: signing key, secrets key, state database, TLS key, backups). One the
    user made group/world-writable is used, with a warning; files of older versions are made private."""
    os.umask(0o077)
    path = path.expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        resolved = path.resolve()
        if not resolved.is_dir():
            fail(f"--data-dir {path} is not a directory", 2)
        probe = resolved / f".dpvault-write-test.{os.getpid()}"
        probe.touch()
        probe.unlink()
    except PermissionError:
        fail(f"--data-dir {path}: permission denied (dpvault must be able to write there)", 2)
    except (FileExistsError, NotADirectoryError):
        fail(f"--data-dir {path} is not a directory", 2)
    except OSError as exc:
        fail(f"--data-dir {path}: {exc.strerror or exc}", 2)
    mode = stat.S_IMODE(resolved.stat().st_mode)
    if mode & 0o022:
        warn(
            f"the data dir {resolved} is writable by {'everyone' if mode & 0o002 else 'its group'} "
            f"(mode {mode:04o}): others could replace its keys or state; chmod 700 {shlex.quote(str(resolved))}"
        )
    for name in _PRIVATE:
        _make_private(resolved / name)
    return resolved


def _make_private(path: Path) -> None:
    try:
        st = path.lstat()
    except OSError:
        return
    if stat.S_ISLNK(st.st_mode):
        return
    if stat.S_ISDIR(st.st_mode):
        if st.st_mode & 0o077:
            path.chmod(0o700)
        for child in path.iterdir():
            if child.is_file() and not child.is_symlink() and child.stat().st_mode & 0o077:
                child.chmod(0o600)
    elif st.st_mode & 0o077:
        path.chmod(0o600)


def open_database(url: str) -> None:
    """Migrate (which connects): a bad URL or an unreachable server is one line, not a traceback."""
    from dpvault.store.engines import migrate, redacted

    try:
        migrate(url)
    except Exception as exc:
        cause = getattr(exc, "orig", None) or exc
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        fail(f"cannot open the state database {redacted(url)}: {first}")


STORE_CHECK_SECONDS = 10.0  # how long start-up retries an object store before it is unreachable


def vault_store_url(value: str | None) -> str | None:
    """``--vault-store`` as a URL: a plain path is made absolute (workers started elsewhere see the
    same directory); URLs are checked when the store is opened."""
    if value is None or "://" in value:
        return value
    return str(Path(value).expanduser().resolve())


def opened_vault_store(settings: Any, *, retry_timeout: float = 60.0) -> Any:
    """The vault store of ``settings``, or one line: an unknown scheme, a missing credential."""
    from dpvault.datastores import DatastoreError
    from dpvault.datastores.urls import open_datastore

    try:
        return open_datastore(
            settings.vault_store_url, data_dir_default=settings.data_dir / "vault", heartbeat=5.0,
            retry_timeout=retry_timeout, tmp_dir=settings.data_dir / "tmp",
        )  # fmt: skip
    except DatastoreError as exc:
        fail(f"--vault-store: {exc}", 2)


def check_vault_store(settings: Any) -> None:
    """The vault store must answer and take a write now, not at the first backup: an unreachable
    endpoint, wrong credentials or a missing container is one line and exit 1."""
    import asyncio

    from dpvault.datastores import DatastoreError
    from dpvault.datastores.urls import check

    store = opened_vault_store(settings, retry_timeout=STORE_CHECK_SECONDS)
    try:
        asyncio.run(check(store))
    except DatastoreError as exc:
        err.print(
            f"dpvault: the vault store {settings.vault_store_url} cannot be used: {exc}",
            highlight=False, markup=False,
        )  # fmt: skip
        sys.stderr.flush()
        # Not a normal exit: an object store's client may still have requests on its own (tokio)
        # threads, which abort the process at interpreter shutdown (seen as SIGABRT, 1 run in 12).
        os._exit(1)


def check_pg_dump(pg_dump: str | None) -> None:
    """A configured pg_dump must work (no silent fallback to another); none found is fine here
    (backups then fail with UserErrorPgDumpNotFound, saying how to install one)."""
    from dpvault.engines.postgres.tools import ToolsError, find_tools

    try:
        find_tools(pg_dump)
    except ToolsError as exc:
        fail(f"--pg-dump {pg_dump}: {exc}", 2)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound now: a busy port fails here, before the banner."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = "the port is in use" if exc.errno == 98 else (exc.strerror or str(exc))
        fail(f"cannot listen on {host}:{port}: {reason}")
    sock.set_inheritable(True)
    return sock


def command() -> str:
    """How the user runs dpvault, for the hints the banner prints (``.venv/bin/dpvault``)."""
    argv0 = sys.argv[0] if sys.argv else ""
    if not argv0 or argv0.endswith(("__main__.py", "-c")):
        return f"{shlex.quote(sys.executable)} -m dpvault"
    found = shutil.which("dpvault")
    if found and Path(found).resolve() == Path(argv0).resolve():
        return "dpvault"
    path = Path(argv0).resolve()
    try:
        shown = str(path.relative_to(Path.cwd()))
    except ValueError:
        shown = str(path)
    return shlex.quote(shown)


def serve_uvicorn(target: Any, sock: socket.socket, *, workers: int, **options: Any) -> None:
    """``uvicorn.run`` on a socket bound already (``bind``)."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(target, factory=workers > 1, workers=workers if workers > 1 else None, **options)
    server = uvicorn.Server(config)
    try:
        if workers > 1:
            Multiprocess(config, sockets=[sock]).run()
        else:
            config.load_app()
            server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    if workers <= 1 and not server.started:
        sys.exit(3)  # uvicorn's STARTUP_FAILURE: the app's start-up failed (logged above)

"""Engine construction and schema migration for SQLite and PostgreSQL URLs."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from dpvault.store import checkpoint

MIGRATIONS = Path(__file__).parent / "migrations"


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def redacted(url: str) -> str:
    """The URL as it may be printed: without its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(a URL that cannot be parsed)"


def sync_url(url: str) -> str:
    """The URL with dpvault's drivers: sqlite3, or psycopg (which SQLAlchemy drives sync and async)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return parsed.set(drivername="sqlite").render_as_string(hide_password=False)
    if parsed.get_backend_name() not in ("postgresql", "postgres"):
        raise ValueError(
            f"unsupported database URL scheme: {parsed.drivername} (use sqlite:// or postgresql://)"
        )
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


# How long SQLite itself waits for a lock another process holds. dpvault's SQLite statements run
# on the event loop, so this blocks everything: the writer waits briefly and Store.transact retries
# asynchronously; WAL readers are blocked only in rare moments (a checkpoint's recovery).
MIGRATION_BUSY_MS = 5000
READER_BUSY_MS = 200
WRITER_BUSY_MS = 20


def _sqlite_pragmas(busy_ms: int):  # type: ignore[no-untyped-def]
    def apply(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
        cursor.close()

    return apply


def migrate(url: str) -> None:
    """Bring the schema to head. On PostgreSQL an advisory lock keeps concurrent starters apart."""
    engine: Engine = create_engine(sync_url(url))
    if is_sqlite(url):
        event.listen(engine, "connect", _sqlite_pragmas(MIGRATION_BUSY_MS))
    try:
        with engine.begin() as conn:
            if not is_sqlite(url):
                conn.execute(text("SELECT pg_advisory_xact_lock(7243829110)"))
            cfg = Config()
            cfg.set_main_option("script_location", str(MIGRATIONS))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    finally:
        engine.dispose()


def make_sqlite_engines(url: str) -> tuple[Engine, Engine]:
    """(reader, writer) for SQLite, used on the event-loop thread (see ``state._InLoop``).

    The writer is one connection whose transactions BEGIN IMMEDIATE, so read-modify-write never
    deadlocks on lock upgrade; readers use WAL snapshots. Short busy timeouts: a lock held by
    another process must not stall the loop (``Store.transact`` retries the write instead).
    """
    target = sync_url(url)
    reader = create_engine(target, pool_size=4, max_overflow=64)
    writer = create_engine(target, pool_size=1, max_overflow=0)
    event.listen(reader, "connect", _sqlite_pragmas(READER_BUSY_MS))
    event.listen(writer, "connect", _sqlite_pragmas(WRITER_BUSY_MS))

    if sqlite_file(url) is not None:  # a file, so state.Store runs a checkpoint.Checkpointer

        @event.listens_for(writer, "connect")
        def _checkpoint_elsewhere(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            # Checkpoints run in the Checkpointer's thread, not in the writer's commits.
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA wal_autocheckpoint={checkpoint.BACKSTOP_PAGES}")
            cursor.execute(f"PRAGMA journal_size_limit={checkpoint.JOURNAL_SIZE_LIMIT}")
            cursor.close()

    @event.listens_for(writer, "connect")
    def _autocommit_driver(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None  # SQLAlchemy, not the driver, begins transactions

    @event.listens_for(writer, "begin")
    def _begin_immediate(conn):  # type: ignore[no-untyped-def]
        # On the driver connection: exec_driver_sql's execution context cost ~8% of a PUT (py-spy).
        conn.connection.driver_connection.execute("BEGIN IMMEDIATE")

    return reader, writer


def sqlite_file(url: str) -> str | None:
    """The database file of a SQLite URL; None for an in-memory database."""
    database = make_url(url).database
    return None if not database or database == ":memory:" or database.startswith("file:") else database


PG_POOL_SIZE = 24
# How long a statement waits for a row lock before its request is answered 503 (Store.transact):
# dpvault's transactions hold rows for milliseconds, so a wait this long is a fault, not a queue.
PG_LOCK_TIMEOUT_MS = 15_000
PG_POOL_OVERFLOW = 16


def _with_lock_timeout(options: str | tuple[str, ...] | None) -> str:
    """libpq ``options`` with dpvault's lock_timeout added (connect_args replace the URL's own)."""
    given = " ".join(options) if isinstance(options, tuple) else (options or "")
    return f"{given} -c lock_timeout={PG_LOCK_TIMEOUT_MS}".strip()


def make_engines(url: str) -> tuple[AsyncEngine, AsyncEngine]:
    """(reader, writer) for PostgreSQL: one pool serves both."""
    # Connections kept open per process: with fewer than the requests and jobs in flight
    # (16 connections of load + the worker), connections past the pool were opened and closed per
    # transaction, each a PostgreSQL backend start: pool 10 gave 480-530 PUTs/s, 24 gave 650 (bench P5).
    engine = create_async_engine(
        sync_url(url),
        pool_size=PG_POOL_SIZE,
        max_overflow=PG_POOL_OVERFLOW,
        pool_pre_ping=False,
        connect_args={"options": _with_lock_timeout(make_url(url).query.get("options"))},
    )
    return engine, engine

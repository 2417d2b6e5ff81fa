"""The files of a whole-server recovery point: ``globals.sql`` and ``<database>.dump`` per database."""

from __future__ import annotations

from urllib.parse import quote, unquote

GLOBALS = "globals.sql"


def file_name(database: str) -> str:
    """``<database>.dump``, the name percent-encoded so that no database name (``/``, ``..``, spaces)
    becomes a path in a directory or a container."""
    return f"{quote(database, safe='')}.dump"


def database_of(name: str) -> str:
    return unquote(name.removesuffix(".dump"))

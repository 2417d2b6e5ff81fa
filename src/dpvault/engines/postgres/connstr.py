"""Database connection strings as Azure Backup expects them, turned into libpq parameters.

Accepted forms:
- ADO.NET / Npgsql: ``Server=host;Database=db;Port=5432;User Id=user;Password=pw;Ssl Mode=Require;``
- libpq URI: ``postgresql://user:pw@host:5432/db?sslmode=require``
- libpq keywords: ``host=h port=5432 dbname=db user=u password=pw``
"""

from __future__ import annotations

import psycopg.conninfo

from dpvault.errors import UserError

_ADO_KEYS = {
    "server": "host",
    "host": "host",
    "data source": "host",
    "address": "host",
    "addr": "host",
    "port": "port",
    "database": "dbname",
    "initial catalog": "dbname",
    "db": "dbname",
    "user id": "user",
    "userid": "user",
    "user": "user",
    "username": "user",
    "user name": "user",
    "uid": "user",
    "password": "password",
    "pwd": "password",
    "ssl mode": "sslmode",
    "sslmode": "sslmode",
    "timeout": "connect_timeout",
    "connect timeout": "connect_timeout",
}
_SSL_MODES = {
    "disable": "disable",
    "allow": "allow",
    "prefer": "prefer",
    "require": "require",
    "verifyca": "verify-ca",
    "verify-ca": "verify-ca",
    "verifyfull": "verify-full",
    "verify-full": "verify-full",
}


# libpq keywords a secret may set (a libpq URI or keyword string); each maps to a PG* variable
# for pg_dump and pg_restore (postgres._env).
ALLOWED = frozenset(
    {
        "host",
        "hostaddr",
        "port",
        "dbname",
        "user",
        "password",
        "sslmode",
        "connect_timeout",
        "target_session_attrs",
    }
)


def _invalid(reason: str) -> UserError:
    return UserError(
        "UserErrorInvalidConnectionString",
        f"The secret does not hold a usable PostgreSQL connection string: {reason}.",
        "Store a connection string such as 'Server=host;Database=db;Port=5432;User Id=user;Password=...;"
        "Ssl Mode=Require;' (or a postgresql:// URI).",
    )


def _split_ado(text: str) -> list[tuple[str, str]]:
    """Split ``k=v;k="v;v";`` honouring double or single quotes around values."""
    pairs: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in "; \t\r\n":
            i += 1
        if i >= n:
            break
        eq = text.find("=", i)
        semi = text.find(";", i)
        if eq == -1 or (semi != -1 and semi < eq):
            raise _invalid("a part has no '=' (quote values that contain ';')")
        key = text[i:eq].strip().lower()
        i = eq + 1
        while i < n and text[i] == " ":
            i += 1
        if i < n and text[i] in "\"'":
            quote = text[i]
            end = text.find(quote, i + 1)
            if end == -1:
                raise _invalid("a quoted value is not closed")
            value = text[i + 1 : end]
            i = end + 1
        else:
            end = text.find(";", i)
            end = n if end == -1 else end
            value = text[i:end].strip()
            i = end
        pairs.append((key, value))
    return pairs


def parse(text: str) -> dict[str, str]:
    """libpq connection parameters from any accepted form; raises UserError when unusable."""
    text = text.strip()
    if not text:
        raise _invalid("it is empty")
    if text.startswith(("postgresql://", "postgres://")) or (
        "=" in text and ";" not in text and "host=" in text
    ):
        try:
            params = {k: str(v) for k, v in psycopg.conninfo.conninfo_to_dict(text).items() if v is not None}
        except psycopg.ProgrammingError:
            raise _invalid("it is not a valid libpq URI or keyword string") from None
        # Only what names a server and logs in: keywords such as passfile, service, sslkey or
        # options would make dpvault read its own files or change the session for whoever wrote
        # the secret.
        unsupported = sorted(set(params) - ALLOWED)
        if unsupported:
            raise _invalid(f"the parameter(s) {', '.join(unsupported)} are not supported")
        if "sslmode" in params and params["sslmode"] not in _SSL_MODES.values():
            raise _invalid(f"sslmode '{params['sslmode']}' is not a libpq SSL mode")
    else:
        params = {}
        for key, value in _split_ado(text):
            target = _ADO_KEYS.get(key)
            if target is None:
                continue  # Pooling, Trust Server Certificate, ... have no libpq meaning
            if target == "sslmode":
                mode = _SSL_MODES.get(value.replace(" ", "").lower())
                if mode is None:
                    raise _invalid(
                        f"Ssl Mode '{value}' is not one of Disable, Allow, Prefer, Require, VerifyCA, VerifyFull"
                    )
                value = mode
            params[target] = value
    if not params.get("host"):
        raise _invalid("it names no server (Server=...)")
    if any(h.strip().startswith(("/", "@")) for h in params["host"].split(",")):
        # A socket on dpvault's own machine would log in as dpvault's OS user (peer authentication).
        raise _invalid("Unix-domain socket paths are not accepted as the server; give a host name")
    if not params.get("dbname"):
        raise _invalid("it names no database (Database=...)")
    for number in ("port", "connect_timeout"):
        value = params.get(number)
        if value is not None and not (value.isascii() and value.isdigit() and len(value) <= 5):
            raise _invalid(f"the {number} '{value}' is not a number")
    return params

"""Database fingerprints: per-table row counts and an order-independent content checksum.

Taken at backup time inside the snapshot pg_dump dumps (``pg_export_snapshot`` + ``--snapshot``), and
again after a restore drill, so "the restore equals the backup" is checked row for row, not assumed.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

TABLES = """
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
ORDER BY 1, 2
"""


async def take(conn: psycopg.AsyncConnection[Any]) -> dict[str, list[Any]]:
    """{"schema.table": [row count, checksum]} for every user table, in the connection's snapshot."""
    tables = await (await conn.execute(TABLES)).fetchall()
    out: dict[str, list[Any]] = {}
    for schema, table in tables:
        query = sql.SQL(
            "SELECT count(*), coalesce(sum(('x' || substr(md5(t::text), 1, 15))::bit(60)::bigint), 0)::text "
            "FROM {}.{} AS t"
        ).format(sql.Identifier(schema), sql.Identifier(table))
        count, checksum = (await (await conn.execute(query)).fetchone()) or (0, "0")
        out[f"{schema}.{table}"] = [int(count), str(checksum)]
    return out

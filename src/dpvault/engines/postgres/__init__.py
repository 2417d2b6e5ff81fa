"""The PostgreSQL engine: one database of Azure Database for PostgreSQL (``Microsoft.DBforPostgreSQL/
servers/databases``, the examples' ``OssDB``), dumped with ``pg_dump -Fc`` and restored with
``pg_restore``.

- ``tools``: finding pg_dump/pg_restore and their version (pg_dump refuses newer servers);
- ``connstr``: the connection strings Azure Backup users store (ADO.NET, URI, keywords) as libpq
  parameters;
- ``engine``: validate, dump, check an archive (the Engine port);
- ``restore``: into a database (FailIfExists, crash-safe re-runs) and drills into a scratch database;
- ``fingerprint``: per-table row counts and checksums, taken in the dump's own snapshot.
"""

from dpvault.engines.postgres.engine import PostgresEngine
from dpvault.engines.postgres.tools import Tools, find_tools

__all__ = ["PostgresEngine", "Tools", "find_tools"]

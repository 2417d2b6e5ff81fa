"""Persistence: resources, operations and the job queue in one SQL database.

SQLite (WAL) by default, PostgreSQL by URL. Only this package imports SQLAlchemy; the rest of
dpvault sees :class:`~dpvault.store.state.Store` and the row types of :mod:`dpvault.store.rows`.
Writes happen in short transactions through :meth:`Store.transact`, which retries on races.
"""

from dpvault.store.rows import (
    BackupJobRow,
    JobRow,
    OperationRow,
    ProtectedItemRow,
    RecoveryPointRow,
    ResourceRow,
    SoftDeletionRow,
)
from dpvault.store.state import Store, Tx

__all__ = [
    "BackupJobRow",
    "JobRow",
    "OperationRow",
    "ProtectedItemRow",
    "RecoveryPointRow",
    "ResourceRow",
    "SoftDeletionRow",
    "Store",
    "Tx",
]

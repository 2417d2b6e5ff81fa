"""Read-only aggregates for the operator's surfaces (``/metrics``, ``/readyz``, the dashboard).

Kept apart from ``state.py``: these statements are off the request hot path (a scrape every few
seconds, a dashboard page), so they are plain SQLAlchemy Core, built per call. Each takes a
:class:`~dpvault.store.state.Tx` from ``Store.read()`` and returns plain tuples and row types.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
from sqlalchemy import case, func, literal, or_, select

from dpvault.store.rows import BackupJobRow
from dpvault.store.state import Store, Tx
from dpvault.store.tables import backup_jobs, jobs, recovery_points

# Upper bounds (seconds) of the job-duration histogram's buckets; +Inf is implied.
DURATION_BUCKETS: tuple[float, ...] = (1, 5, 15, 30, 60, 120, 300, 900, 1800, 3600, 7200, 21600, 86400)


class JobCounts(msgspec.Struct, frozen=True):
    """Backup-job records of one vault, operation and status: how many, and (finished ones) how
    long they took, as cumulative bucket counts over ``DURATION_BUCKETS``."""

    vault_key: str
    operation: str
    status: str
    count: int
    finished: int
    duration_sum: float
    buckets: tuple[int, ...]


class InstanceStats(msgspec.Struct, frozen=True):
    instance_key: str
    vault_key: str
    recovery_points: int = 0
    stored_bytes: int = 0
    backed_up_bytes: int = 0
    last_success: float | None = None  # end of the newest Completed backup


async def _rows(tx: Tx, stmt: Any) -> list[Any]:
    # Tx's connection wrapper runs any SQLAlchemy statement (the hot ones take a faster path).
    return list((await tx._conn.execute(stmt)).all())  # same package: the statement is ours


async def job_counts(tx: Tx) -> list[JobCounts]:
    """Every backup-job record, grouped by vault, operation and status."""
    c = backup_jobs.c
    duration = c.end_time - c.start_time
    bucket_cols = [func.sum(case((duration <= bound, 1), else_=0)) for bound in DURATION_BUCKETS]
    stmt = select(
        c.vault_key,
        c.operation,
        c.status,
        func.count(),
        func.sum(case((c.end_time.is_not(None), 1), else_=0)),
        func.coalesce(func.sum(duration), literal(0.0)),
        *bucket_cols,
    ).group_by(c.vault_key, c.operation, c.status)
    out = []
    for row in await _rows(tx, stmt):
        vault_key, operation, status, count, finished, total, *buckets = row
        counted = tuple(int(b or 0) for b in buckets)
        out.append(
            JobCounts(
                vault_key, operation, status, int(count), int(finished or 0), float(total or 0), counted
            )
        )
    return out


async def instance_stats(tx: Tx) -> list[InstanceStats]:
    """Per backup instance: available recovery points and their bytes, bytes backed up, last success."""
    rp = recovery_points.c
    points = select(rp.instance_key, rp.vault_key, func.count(), func.coalesce(func.sum(rp.size), 0)).where(
        rp.state == "available"
    )
    points = points.group_by(rp.instance_key, rp.vault_key)
    bj = backup_jobs.c
    backups = (
        select(bj.instance_key, bj.vault_key, func.max(bj.end_time), func.coalesce(func.sum(bj.bytes), 0))
        .where(bj.operation == "Backup", bj.status == "Completed", bj.instance_key.is_not(None))
        .group_by(bj.instance_key, bj.vault_key)
    )
    found: dict[str, dict[str, Any]] = {}
    for key, vault, count, size in await _rows(tx, points):
        found[key] = {"vault_key": vault, "recovery_points": int(count), "stored_bytes": int(size or 0)}
    for key, vault, last, size in await _rows(tx, backups):
        entry = found.setdefault(key, {"vault_key": vault})
        entry["last_success"] = float(last) if last is not None else None
        entry["backed_up_bytes"] = int(size or 0)
    return [InstanceStats(instance_key=k, **v) for k, v in sorted(found.items())]


async def queue_depth(tx: Tx) -> list[tuple[str, str, int]]:
    """(kind, state, count) of queued jobs that are waiting or running."""
    c = jobs.c
    stmt = (
        select(c.kind, c.state, func.count())
        .where(c.state.in_(("ready", "running")))
        .group_by(c.kind, c.state)
    )
    return [(kind, state, int(n)) for kind, state, n in await _rows(tx, stmt)]


async def recent_backup_jobs(
    tx: Tx,
    vault_keys: Sequence[str],
    *,
    instance_key: str | None = None,
    limit: int = 50,
    only: Sequence[str] | None = None,
) -> list[BackupJobRow]:
    """Newest first: the backup-job records of these vaults (of one instance), optionally only
    those of the given statuses."""
    if not vault_keys:
        return []
    c = backup_jobs.c
    stmt = select(backup_jobs).where(c.vault_key.in_(list(vault_keys)))
    if instance_key is not None:
        stmt = stmt.where(c.instance_key == instance_key)
    if only:
        stmt = stmt.where(or_(*[c.status == s for s in only]))
    stmt = stmt.order_by(c.pk.desc()).limit(limit)
    result = await tx._conn.execute(stmt)
    return [BackupJobRow.from_mapping(m) for m in result.mappings().all()]


async def ping(store: Store) -> None:
    """A trivial statement on the state database (callers bound the wait); raises if it cannot."""
    async with store.read() as tx:
        await _rows(tx, select(literal(1)))

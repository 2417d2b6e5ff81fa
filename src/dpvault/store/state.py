"""The Store: short transactions over resources, operations and jobs.

Read with ``async with store.read() as tx``; write with ``await store.transact(fn)``, which runs
``fn(tx)`` in one transaction and re-runs it when a concurrent writer won a race (a unique key taken,
a serialization failure). Everything a request changes (resource, operation, job) commits together.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import psycopg
import structlog
from sqlalchemy import bindparam, delete, func, insert, or_, select, text, update
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.postgresql import psycopg as pg_psycopg
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from dpvault import errors
from dpvault.store import checkpoint, engines
from dpvault.store.rows import (
    BackupJobRow,
    JobRow,
    OperationRow,
    ProtectedItemRow,
    RecoveryPointRow,
    ResourceRow,
    SoftDeletionRow,
    _Row,
)
from dpvault.store.tables import (
    backup_jobs,
    clients,
    clock_state,
    jobs,
    operations,
    protected_items,
    recovery_points,
    resources,
    secrets,
    soft_deletions,
    subscriptions,
    vault_chunks,
    vault_keys,
    vault_maintenance,
    vault_packs,
)

log = structlog.get_logger("dpvault.store")

T = TypeVar("T")
R = TypeVar("R", bound=_Row)


# Hot statements, built once: constructing and coercing SQLAlchemy statements per call cost more
# than executing them (profiled under bench P1). Values arrive as execute() parameters.
_RESOURCE = select(resources).where(resources.c.key == bindparam("k_"))
_RESOURCE_LOCKED = _RESOURCE.with_for_update()
_RESOURCE_SHARED = _RESOURCE.with_for_update(read=True)
# a fixed IN list: an "expanding" parameter would re-render the statement on every call
_RESOURCES_3 = select(resources).where(
    resources.c.key.in_([bindparam("a_"), bindparam("b_"), bindparam("c_")])
)
_RESOURCES_3_SHARED = _RESOURCES_3.with_for_update(read=True)
_INSERT_RESOURCE = insert(resources)
_UPDATE_RESOURCE = update(resources).where(resources.c.key == bindparam("k_"))
_DELETE_RESOURCE = delete(resources).where(resources.c.key == bindparam("k_"))
_OPERATION = select(operations).where(operations.c.id == bindparam("k_"))
_OPERATION_LOCKED = _OPERATION.with_for_update()
_INSERT_OPERATION = insert(operations)
_UPDATE_OPERATION = update(operations).where(operations.c.id == bindparam("k_"))
_INSERT_JOB = insert(jobs)
_INSERT_BACKUP_JOB = insert(backup_jobs)
_BACKUP_JOB = select(backup_jobs).where(backup_jobs.c.id == bindparam("k_"))
_BACKUP_JOB_LOCKED = _BACKUP_JOB.with_for_update()
_UPDATE_BACKUP_JOB = update(backup_jobs).where(backup_jobs.c.id == bindparam("k_"))
_PROTECTED = select(protected_items).where(protected_items.c.instance_key == bindparam("k_"))
_PROTECTED_LOCKED = _PROTECTED.with_for_update()
_UPDATE_PROTECTED = update(protected_items).where(protected_items.c.instance_key == bindparam("k_"))


def _upsert_protected(insert_of: Any) -> Any:
    stmt = insert_of(protected_items)
    return stmt.on_conflict_do_update(
        index_elements=["instance_key"],
        set_={c.name: stmt.excluded[c.name] for c in protected_items.columns if c.name != "instance_key"},
    )


_UPSERT_PROTECTED_SQLITE = _upsert_protected(sqlite_dialect.insert)
_UPSERT_PROTECTED_PG = _upsert_protected(pg_insert)
_FINISH_JOB = (
    update(jobs)
    .where(jobs.c.id == bindparam("id_"), jobs.c.lease_owner == bindparam("owner_"))
    .values(lease_owner=None, lease_expires_at=None)
)
_RENEW_LEASE = update(jobs).where(
    jobs.c.id == bindparam("id_"), jobs.c.lease_owner == bindparam("owner_"), jobs.c.state == "running"
)


def _claim(postgres: bool) -> Any:
    candidate = (
        select(jobs.c.id)
        .where(jobs.c.state == "ready", jobs.c.run_at <= bindparam("now_"))
        .order_by(jobs.c.run_at, jobs.c.id)
        .limit(bindparam("limit_"))
    )
    if postgres:
        candidate = candidate.with_for_update(skip_locked=True)
    return (
        update(jobs)
        .where(jobs.c.id.in_(candidate.scalar_subquery()))
        .values(
            state="running",
            lease_owner=bindparam("owner_"),
            lease_expires_at=bindparam("lease_"),
            attempts=jobs.c.attempts + 1,
        )
        .returning(*jobs.c)
    )


_NEXT_READY = select(func.min(jobs.c.run_at)).where(jobs.c.state == "ready")
JOBS_CHANNEL = "dpvault_jobs"
_CLAIM = _claim(False)
_CLAIM_PG = _claim(True)


class Tx:
    """One transaction. Methods are thin, named statements; callers decide what they mean."""

    def __init__(self, conn: AsyncConnection, *, writable: bool, postgres: bool) -> None:
        self._conn = conn
        self._lock_rows = writable and postgres
        self._postgres = postgres

    @property
    def locks_rows(self) -> bool:
        """True in a PostgreSQL write transaction, where reads lock rows (SQLite has one writer)."""
        return self._lock_rows

    # -- resources ---------------------------------------------------------------------------

    async def resource(self, key: str, *, lock: bool | str = True) -> ResourceRow | None:
        """A resource by key. In a PostgreSQL write transaction the row is locked FOR UPDATE, or
        FOR SHARE with ``lock="share"`` (a parent that must not vanish meanwhile, while siblings are
        written concurrently), or not at all with ``lock=False`` (rows only read, like a policy)."""
        if not self._lock_rows or lock is False:
            stmt = _RESOURCE
        else:
            stmt = _RESOURCE_SHARED if lock == "share" else _RESOURCE_LOCKED
        rows = (await self._conn.execute(stmt, {"k_": key})).rows_as(ResourceRow)
        return rows[0] if rows else None

    async def resources(self, keys: Sequence[str], *, update: str | None = None) -> dict[str, ResourceRow]:
        """Up to three resources, by key (``keys`` and ``update`` together); ``keys`` locked FOR SHARE
        in a PostgreSQL write transaction (a parent's delete waits for them; writers of siblings do
        not), ``update`` FOR UPDATE, after them. One statement on SQLite.

        The row a transaction writes is locked FOR UPDATE from the start: taking it FOR SHARE first
        and upgrading later deadlocks two writers of it, each waiting for the other's share lock to
        go (issue 15: 500s and 37 s requests under concurrent PUTs of one instance)."""
        if not self._lock_rows or update is None:
            padded = [*keys, *([update] if update is not None else []), "", "", ""][:3]
            stmt = _RESOURCES_3_SHARED if self._lock_rows else _RESOURCES_3
            result = await self._conn.execute(stmt, {"a_": padded[0], "b_": padded[1], "c_": padded[2]})
            return {r.key: r for r in result.rows_as(ResourceRow)}
        padded = [*keys, "", "", ""][:3]
        result = await self._conn.execute(
            _RESOURCES_3_SHARED, {"a_": padded[0], "b_": padded[1], "c_": padded[2]}
        )
        found = {r.key: r for r in result.rows_as(ResourceRow)}
        row = await self.resource(update)
        if row is not None:
            found[row.key] = row
        return found

    async def resources_many(self, keys: Sequence[str]) -> dict[str, ResourceRow]:
        """Resources by key in one statement, for a batch; locked FOR UPDATE (in key order) in a
        PostgreSQL write transaction, like ``resource``."""
        if not keys:
            return {}
        stmt, params = _by_keys("resources", sorted(set(keys)), locked=self._lock_rows)
        return {r.key: r for r in (await self._conn.execute(stmt, params)).rows_as(ResourceRow)}

    async def resources_by(
        self,
        kind: str,
        *,
        parent_key: str | None = None,
        rg_key: str | None = None,
        subscription: str | None = None,
        after_pk: int = 0,
        limit: int | None = None,
    ) -> list[ResourceRow]:
        stmt = select(resources).where(resources.c.kind == kind, resources.c.pk > after_pk)
        if parent_key is not None:
            stmt = stmt.where(resources.c.parent_key == parent_key)
        if rg_key is not None:
            stmt = stmt.where(resources.c.rg_key == rg_key)
        if subscription is not None:
            stmt = stmt.where(resources.c.subscription == subscription)
        stmt = stmt.order_by(resources.c.pk)
        if limit is not None:
            stmt = stmt.limit(limit)
        rows = (await self._conn.execute(stmt)).mappings().all()
        return [ResourceRow.from_mapping(r) for r in rows]

    async def count_resources(self, kind: str, *, parent_key: str) -> int:
        stmt = (
            select(func.count())
            .select_from(resources)
            .where(resources.c.kind == kind, resources.c.parent_key == parent_key)
        )
        return int((await self._conn.execute(stmt)).scalar_one())

    async def busy_resources(self, *, rg_key: str | None = None, parent_key: str | None = None) -> list[str]:
        """Names of resources under a scope that have an operation running."""
        stmt = select(resources.c.name).where(resources.c.active_operation.is_not(None))
        if rg_key is not None:
            stmt = stmt.where(resources.c.rg_key == rg_key)
        if parent_key is not None:
            stmt = stmt.where(resources.c.parent_key == parent_key)
        return list((await self._conn.execute(stmt)).scalars().all())

    async def insert_resource(self, **values: Any) -> None:
        await self._conn.execute(_INSERT_RESOURCE, values)

    async def update_resource(self, key: str, **values: Any) -> None:
        await self._conn.execute(_UPDATE_RESOURCE, {"k_": key, **values})

    async def delete_resource(self, key: str) -> None:
        await self._conn.execute(_DELETE_RESOURCE, {"k_": key})

    async def delete_resources(self, *, parent_key: str | None = None, rg_key: str | None = None) -> None:
        stmt = delete(resources)
        if parent_key is not None:
            stmt = stmt.where(resources.c.parent_key == parent_key)
        if rg_key is not None:
            stmt = stmt.where(resources.c.rg_key == rg_key)
        await self._conn.execute(stmt)

    # -- operations --------------------------------------------------------------------------

    async def operation(self, op_id: str, *, lock: bool = True) -> OperationRow | None:
        """An operation by id; locked FOR UPDATE in a PostgreSQL write transaction unless ``lock`` is
        False. A request holding a resource row FOR UPDATE reads the resource's active operation with
        ``lock=False``: the jobs that end operations lock the operation and then the resource, so
        locking it after the resource would close a cycle (a deadlock); unlocked, the request sees
        the last committed state, and a job ending the operation meanwhile waits for the row."""
        stmt = _OPERATION_LOCKED if self._lock_rows and lock else _OPERATION
        rows = (await self._conn.execute(stmt, {"k_": op_id})).rows_as(OperationRow)
        return rows[0] if rows else None

    async def operations_many(self, op_ids: Sequence[str], *, lock: bool = True) -> dict[str, OperationRow]:
        """Operations by id in one statement, for a batch; locked like ``operation`` (in id order)
        unless ``lock`` is False."""
        if not op_ids:
            return {}
        stmt, params = _by_keys("operations", sorted(set(op_ids)), locked=self._lock_rows and lock)
        return {r.id: r for r in (await self._conn.execute(stmt, params)).rows_as(OperationRow)}

    async def insert_operation(self, **values: Any) -> None:
        await self._conn.execute(_INSERT_OPERATION, values)

    async def update_operation(self, op_id: str, **values: Any) -> None:
        await self._conn.execute(_UPDATE_OPERATION, {"k_": op_id, **values})

    # -- jobs --------------------------------------------------------------------------------

    async def enqueue(
        self,
        kind: str,
        payload: bytes,
        *,
        now: float,
        dedupe_key: str | None = None,
        max_attempts: int = 5,
    ) -> bool:
        """Add a job; with a ``dedupe_key`` already taken nothing is added and False is returned."""
        values = {
            "kind": kind,
            "payload": payload,
            "state": "ready",
            "run_at": now,
            "attempts": 0,
            "max_attempts": max_attempts,
            "dedupe_key": dedupe_key,
            "created_at": now,
        }
        # On PostgreSQL a trigger (migration 0006) notifies the workers of other processes; the
        # notification is delivered at commit.
        if dedupe_key is None:
            await self._conn.execute(_INSERT_JOB, values)
            return True
        if self._postgres:
            stmt = pg_insert(jobs).values(**values).on_conflict_do_nothing(index_elements=["dedupe_key"])
        else:
            stmt = (
                sqlite_dialect.insert(jobs)
                .values(**values)
                .on_conflict_do_nothing(index_elements=["dedupe_key"])
            )
        result = await self._conn.execute(stmt)
        return bool(result.rowcount)

    async def claim_jobs(self, owner: str, *, now: float, lease_until: float, limit: int) -> list[JobRow]:
        """Take up to ``limit`` due jobs, each exactly once across workers (``SKIP LOCKED`` on
        PostgreSQL; SQLite has one writer). Uses the (state, run_at) index."""
        stmt = _CLAIM_PG if self._postgres else _CLAIM
        params = {"now_": now, "limit_": limit, "owner_": owner, "lease_": lease_until}
        return (await self._conn.execute(stmt, params)).rows_as(JobRow)

    async def requeue_expired(self, *, now: float) -> int:
        """Jobs whose worker stopped renewing its lease (it died) become claimable again."""
        stmt = (
            update(jobs)
            .where(jobs.c.state == "running", jobs.c.lease_expires_at < now)
            .values(state="ready", lease_owner=None, lease_expires_at=None)
        )
        return int((await self._conn.execute(stmt)).rowcount or 0)

    async def prune_jobs(self, *, before: float) -> int:
        stmt = delete(jobs).where(jobs.c.state.in_(("done", "failed")), jobs.c.finished_at < before)
        return int((await self._conn.execute(stmt)).rowcount or 0)

    async def renew_lease(self, job_id: int, owner: str, *, lease_until: float) -> bool:
        params = {"id_": job_id, "owner_": owner, "lease_expires_at": lease_until}
        result = await self._conn.execute(_RENEW_LEASE, params)
        return bool(result.rowcount)

    async def finish_jobs(self, job_ids: Sequence[int], owner: str, *, now: float) -> int:
        """Mark this worker's jobs done in one statement (a batch); returns how many were."""
        if not job_ids:
            return 0
        stmt, params = _by_keys("jobs", sorted(job_ids), locked=False)
        params.update(owner_=owner, state="done", finished_at=now, last_error=None)
        return (await self._conn.execute(stmt, params)).rowcount

    async def finish_job(self, job_id: int, owner: str, *, now: float, state: str, error: str | None) -> bool:
        params = {"id_": job_id, "owner_": owner, "state": state, "finished_at": now, "last_error": error}
        result = await self._conn.execute(_FINISH_JOB, params)
        return bool(result.rowcount)

    async def retry_job(self, job_id: int, owner: str, *, run_at: float, error: str) -> bool:
        stmt = (
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.lease_owner == owner)
            .values(state="ready", run_at=run_at, last_error=error, lease_owner=None, lease_expires_at=None)
        )
        result = await self._conn.execute(stmt)
        return bool(result.rowcount)

    async def next_job_time(self) -> float | None:
        """When the earliest ready job becomes due (expired leases are requeued by the sweeper)."""
        return (await self._conn.execute(_NEXT_READY)).scalar()

    async def jobs_by_state(self, states: Sequence[str]) -> list[JobRow]:
        stmt = select(jobs).where(jobs.c.state.in_(states)).order_by(jobs.c.id)
        return [JobRow.from_mapping(r) for r in (await self._conn.execute(stmt)).mappings().all()]

    async def pending_jobs(self, *, now: float) -> int:
        """Jobs that are running, or ready and due: what "the queue is idle" waits for."""
        stmt = (
            select(func.count())
            .select_from(jobs)
            .where((jobs.c.state == "running") | ((jobs.c.state == "ready") & (jobs.c.run_at <= now)))
        )
        return int((await self._conn.execute(stmt)).scalar_one())

    # -- secrets -----------------------------------------------------------------------------

    async def secret(self, tenant: str, uri_key: str) -> bytes | None:
        stmt = select(secrets.c.ciphertext).where(secrets.c.tenant == tenant, secrets.c.uri_key == uri_key)
        return (await self._conn.execute(stmt)).scalar()

    async def put_secret(self, tenant: str, uri_key: str, uri: str, ciphertext: bytes, *, now: float) -> None:
        existing = await self.secret(tenant, uri_key)
        if existing is None:
            await self._conn.execute(
                insert(secrets).values(
                    tenant=tenant,
                    uri_key=uri_key,
                    uri=uri,
                    ciphertext=ciphertext,
                    created_at=now,
                    updated_at=now,
                )
            )
        else:
            await self._conn.execute(
                update(secrets)
                .where(secrets.c.tenant == tenant, secrets.c.uri_key == uri_key)
                .values(uri=uri, ciphertext=ciphertext, updated_at=now)
            )

    async def delete_secret(self, tenant: str, uri_key: str) -> bool:
        result = await self._conn.execute(
            delete(secrets).where(secrets.c.tenant == tenant, secrets.c.uri_key == uri_key)
        )
        return bool(result.rowcount)

    async def secret_uris(self, tenant: str | None = None) -> list[tuple[str, str]]:
        """(tenant, uri) of every stored secret, or of one tenant's."""
        stmt = select(secrets.c.tenant, secrets.c.uri).order_by(secrets.c.tenant, secrets.c.uri)
        if tenant is not None:
            stmt = stmt.where(secrets.c.tenant == tenant)
        return [(r[0], r[1]) for r in (await self._conn.execute(stmt)).all()]

    # -- protected items ---------------------------------------------------------------------

    async def protected_item(self, instance_key: str) -> ProtectedItemRow | None:
        stmt = _PROTECTED_LOCKED if self._lock_rows else _PROTECTED
        rows = (await self._conn.execute(stmt, {"k_": instance_key})).rows_as(ProtectedItemRow)
        return rows[0] if rows else None

    async def upsert_protected_item(
        self,
        instance_key: str,
        *,
        vault_key: str,
        policy_key: str,
        state: str,
        last_occurrence: float | None,
        next_due_at: float | None,
        updated_at: float,
    ) -> None:
        """Insert or replace every column of an instance's schedule row (one prebuilt statement)."""
        stmt = _UPSERT_PROTECTED_PG if self._postgres else _UPSERT_PROTECTED_SQLITE
        params = {
            "instance_key": instance_key, "vault_key": vault_key, "policy_key": policy_key, "state": state,
            "last_occurrence": last_occurrence, "next_due_at": next_due_at, "updated_at": updated_at,
        }  # fmt: skip
        await self._conn.execute(stmt, params)

    async def update_protected_item(self, instance_key: str, **values: Any) -> None:
        await self._conn.execute(_UPDATE_PROTECTED, {"k_": instance_key, **values})

    async def delete_protected_item(self, instance_key: str) -> None:
        await self._conn.execute(
            delete(protected_items).where(protected_items.c.instance_key == instance_key)
        )

    async def due_protected_items(self, *, now: float, limit: int) -> list[ProtectedItemRow]:
        stmt = (
            select(protected_items)
            .where(protected_items.c.state == "active", protected_items.c.next_due_at <= now)
            .order_by(protected_items.c.next_due_at)
            .limit(limit)
        )
        if self._lock_rows:
            stmt = stmt.with_for_update(skip_locked=True)
        return [ProtectedItemRow.from_mapping(r) for r in (await self._conn.execute(stmt)).mappings().all()]

    async def reschedule_policy(self, policy_key: str, *, now: float) -> None:
        """A policy changed: its items are looked at again by the next scheduler tick."""
        await self._conn.execute(
            update(protected_items)
            .where(protected_items.c.policy_key == policy_key, protected_items.c.state == "active")
            .values(next_due_at=now)
        )

    async def next_due_time(self) -> float | None:
        stmt = select(func.min(protected_items.c.next_due_at)).where(protected_items.c.state == "active")
        return (await self._conn.execute(stmt)).scalar()

    # -- recovery points ---------------------------------------------------------------------

    async def insert_recovery_point(self, **values: Any) -> None:
        await self._conn.execute(insert(recovery_points).values(**values))

    async def recovery_point(self, rp_id: str) -> RecoveryPointRow | None:
        stmt = select(recovery_points).where(recovery_points.c.id == rp_id)
        row = (await self._conn.execute(stmt)).mappings().first()
        return RecoveryPointRow.from_mapping(row) if row else None

    async def recovery_points_of(
        self,
        instance_key: str,
        *,
        start: float | None = None,
        end: float | None = None,
        states: Sequence[str] = ("available",),
        after: tuple[float, str] | None = None,
        limit: int | None = None,
    ) -> list[RecoveryPointRow]:
        """Newest first. ``after`` continues a page: (time, id) of the last item seen."""
        stmt = select(recovery_points).where(
            recovery_points.c.instance_key == instance_key, recovery_points.c.state.in_(states)
        )
        if start is not None:
            stmt = stmt.where(recovery_points.c.time >= start)
        if end is not None:
            stmt = stmt.where(recovery_points.c.time <= end)
        if after is not None:
            t, rid = after
            stmt = stmt.where(
                or_(recovery_points.c.time < t, (recovery_points.c.time == t) & (recovery_points.c.id < rid))
            )
        stmt = stmt.order_by(recovery_points.c.time.desc(), recovery_points.c.id.desc())
        if limit is not None:
            stmt = stmt.limit(limit)
        return [RecoveryPointRow.from_mapping(r) for r in (await self._conn.execute(stmt)).mappings().all()]

    async def expired_recovery_points(self, *, now: float, limit: int) -> list[RecoveryPointRow]:
        stmt = (
            select(recovery_points)
            .where(*_EXPIRABLE, recovery_points.c.expiry <= now)
            .order_by(recovery_points.c.expiry)
            .limit(limit)
        )
        return [RecoveryPointRow.from_mapping(r) for r in (await self._conn.execute(stmt)).mappings().all()]

    async def next_expiry(self) -> float | None:
        stmt = select(func.min(recovery_points.c.expiry)).where(*_EXPIRABLE)
        return (await self._conn.execute(stmt)).scalar()

    async def restores_in_progress(
        self, instance_key: str | None = None, *, vault_keys: Sequence[str] = ()
    ) -> int:
        """User restores (not drills) still running, of one instance's points or any in ``vault_keys``."""
        scope = (
            backup_jobs.c.instance_key == instance_key
            if instance_key is not None
            else backup_jobs.c.vault_key.in_(list(vault_keys))
        )
        stmt = (
            select(func.count())
            .select_from(backup_jobs)
            .where(scope, backup_jobs.c.operation == "Restore", backup_jobs.c.status == "InProgress")
        )
        return int((await self._conn.execute(stmt)).scalar_one())

    async def mark_expired(self, rp_ids: Sequence[str], *, now: float) -> list[str]:
        """Mark ``deleting`` those of ``rp_ids`` retention may still delete, re-checked in this write
        (a restore may have started reading one since they were listed); returns the marked ids."""
        if not rp_ids:
            return []
        ids = list(rp_ids)
        await self._conn.execute(
            update(recovery_points)
            .where(recovery_points.c.id.in_(ids), *_EXPIRABLE, recovery_points.c.expiry <= now)
            .values(state="deleting")
        )
        stmt = select(recovery_points.c.id).where(
            recovery_points.c.id.in_(ids), recovery_points.c.state == "deleting"
        )
        return [r[0] for r in (await self._conn.execute(stmt)).all()]

    async def update_recovery_point(self, rp_id: str, **values: Any) -> None:
        await self._conn.execute(
            update(recovery_points).where(recovery_points.c.id == rp_id).values(**values)
        )

    async def delete_recovery_point(self, rp_id: str) -> None:
        await self._conn.execute(delete(recovery_points).where(recovery_points.c.id == rp_id))

    async def recovery_points_in_vaults(self, vault_keys: Sequence[str]) -> list[RecoveryPointRow]:
        if not vault_keys:
            return []
        stmt = select(recovery_points).where(recovery_points.c.vault_key.in_(list(vault_keys)))
        return [RecoveryPointRow.from_mapping(r) for r in (await self._conn.execute(stmt)).mappings().all()]

    async def forget_vaults(self, vault_keys: Sequence[str]) -> None:
        """Everything protection keeps about these vaults, beside their resources: schedules, jobs."""
        if not vault_keys:
            return
        keys = list(vault_keys)
        await self._conn.execute(delete(protected_items).where(protected_items.c.vault_key.in_(keys)))
        await self._conn.execute(delete(backup_jobs).where(backup_jobs.c.vault_key.in_(keys)))

    async def delete_recovery_points_in_vaults(self, vault_keys: Sequence[str]) -> None:
        if vault_keys:
            await self._conn.execute(
                delete(recovery_points).where(recovery_points.c.vault_key.in_(list(vault_keys)))
            )

    async def all_recovery_points(self) -> list[RecoveryPointRow]:
        stmt = (
            select(recovery_points)
            .where(recovery_points.c.state == "available")
            .order_by(recovery_points.c.vault_key, recovery_points.c.time)
        )
        return [RecoveryPointRow.from_mapping(r) for r in (await self._conn.execute(stmt)).mappings().all()]

    async def recovery_points_in_state(self, state: str) -> list[RecoveryPointRow]:
        stmt = select(recovery_points).where(recovery_points.c.state == state)
        return [RecoveryPointRow.from_mapping(r) for r in (await self._conn.execute(stmt)).mappings().all()]

    async def all_recovery_point_keys(self) -> set[str]:
        return set((await self._conn.execute(select(recovery_points.c.object_key))).scalars().all())

    # -- vault format 2: keys, packs, the chunk index, the maintenance lease ----------------------

    def _insert_ignoring(self, table: Any, values: Any, keys: list[str]) -> Any:
        """INSERT ... ON CONFLICT (keys) DO NOTHING, for either dialect."""
        build = pg_insert if self._postgres else sqlite_dialect.insert
        return build(table).values(values).on_conflict_do_nothing(index_elements=keys)

    async def vault_key_record(self, vault_key: str) -> tuple[str, bytes] | None:
        stmt = select(vault_keys.c.key_id, vault_keys.c.wrapped).where(vault_keys.c.vault_key == vault_key)
        row = (await self._conn.execute(stmt)).first()
        return (row[0], bytes(row[1])) if row else None

    async def insert_vault_key(self, vault_key: str, key_id: str, wrapped: bytes, *, now: float) -> bool:
        """False if the vault has a key already (another process made it first: use that one)."""
        values = {
            "vault_key": vault_key,
            "key_id": key_id,
            "wrapped": wrapped,
            "created_at": now,
            "updated_at": now,
        }
        result = await self._conn.execute(self._insert_ignoring(vault_keys, values, ["vault_key"]))
        return bool(result.rowcount)

    async def update_vault_key(self, vault_key: str, wrapped: bytes, *, now: float) -> None:
        await self._conn.execute(
            update(vault_keys)
            .where(vault_keys.c.vault_key == vault_key)
            .values(wrapped=wrapped, updated_at=now)
        )

    async def known_chunks(self, vault_key: str, chunk_ids: Sequence[str]) -> set[str]:
        """Which of ``chunk_ids`` the vault's index holds."""
        if not chunk_ids:
            return set()
        stmt = select(vault_chunks.c.chunk_id).where(
            vault_chunks.c.vault_key == vault_key, vault_chunks.c.chunk_id.in_(list(chunk_ids))
        )
        return {r[0] for r in (await self._conn.execute(stmt)).all()}

    async def insert_pack(
        self,
        vault_key: str,
        pack_id: str,
        *,
        size: int,
        chunks: Sequence[tuple[str, int, int, int]],
        retain_until: float | None,
        now: float,
    ) -> None:
        """Record a pack written whole and index its chunks ((id, offset, length, raw length));
        a chunk indexed already (another pack holds it) keeps its entry."""
        pack = {"vault_key": vault_key, "pack_id": pack_id, "size": size, "chunks": len(chunks),
                "retain_until": retain_until, "created_at": now}  # fmt: skip
        await self._conn.execute(self._insert_ignoring(vault_packs, pack, ["vault_key", "pack_id"]))
        if chunks:
            rows = [
                {
                    "vault_key": vault_key,
                    "chunk_id": c,
                    "pack_id": pack_id,
                    "offset": o,
                    "length": n,
                    "raw_length": r,
                }
                for c, o, n, r in chunks
            ]
            await self._conn.execute(self._insert_ignoring(vault_chunks, rows, ["vault_key", "chunk_id"]))

    async def chunk_locations(
        self, vault_key: str, chunk_ids: Sequence[str]
    ) -> dict[str, tuple[str, int, int, int]]:
        """chunk id -> (pack id, offset, length, raw length), for those the index holds."""
        if not chunk_ids:
            return {}
        c = vault_chunks.c
        stmt = select(c.chunk_id, c.pack_id, c.offset, c.length, c.raw_length).where(
            c.vault_key == vault_key, c.chunk_id.in_(list(set(chunk_ids)))
        )
        return {r[0]: (r[1], int(r[2]), int(r[3]), int(r[4])) for r in (await self._conn.execute(stmt)).all()}

    async def packs_of_vault(self, vault_key: str) -> list[dict[str, Any]]:
        stmt = (
            select(vault_packs).where(vault_packs.c.vault_key == vault_key).order_by(vault_packs.c.created_at)
        )
        return [dict(r) for r in (await self._conn.execute(stmt)).mappings().all()]

    async def vault_pack_bytes(self, vault_key: str) -> int | None:
        """What the vault's packs take in the store (None: it has none, e.g. format 1 only)."""
        stmt = select(func.count(), func.sum(vault_packs.c.size)).where(vault_packs.c.vault_key == vault_key)
        count, total = (await self._conn.execute(stmt)).one()
        return int(total or 0) if count else None

    async def pack_exists(self, vault_key: str, pack_id: str) -> bool:
        stmt = select(vault_packs.c.pack_id).where(
            vault_packs.c.vault_key == vault_key, vault_packs.c.pack_id == pack_id
        )
        return (await self._conn.execute(stmt)).first() is not None

    async def recovery_points_in_vault(self, vault_key: str) -> list[RecoveryPointRow]:
        """Every point of one vault, whatever its state."""
        stmt = select(recovery_points).where(recovery_points.c.vault_key == vault_key)
        return [RecoveryPointRow.from_mapping(r) for r in (await self._conn.execute(stmt)).mappings().all()]

    async def chunks_of_pack(self, vault_key: str, pack_id: str) -> list[tuple[str, int, int, int]]:
        c = vault_chunks.c
        stmt = (
            select(c.chunk_id, c.offset, c.length, c.raw_length)
            .where(c.vault_key == vault_key, c.pack_id == pack_id)
            .order_by(c.offset)
        )
        return [(r[0], int(r[1]), int(r[2]), int(r[3])) for r in (await self._conn.execute(stmt)).all()]

    async def move_chunks(self, vault_key: str, pack_id: str, moves: Sequence[tuple[str, int]]) -> None:
        """Point chunks at their copies in ``pack_id`` ((chunk id, new offset)): a repack."""
        for chunk_id, offset in moves:
            await self._conn.execute(
                update(vault_chunks)
                .where(vault_chunks.c.vault_key == vault_key, vault_chunks.c.chunk_id == chunk_id)
                .values(pack_id=pack_id, offset=offset)
            )

    async def delete_pack(self, vault_key: str, pack_id: str) -> None:
        """A pack's row and the index entries that still point into it."""
        await self._conn.execute(
            delete(vault_chunks).where(
                vault_chunks.c.vault_key == vault_key, vault_chunks.c.pack_id == pack_id
            )
        )
        await self._conn.execute(
            delete(vault_packs).where(vault_packs.c.vault_key == vault_key, vault_packs.c.pack_id == pack_id)
        )

    async def forget_vault_data(self, vault_keys_: Sequence[str]) -> None:
        """Everything format 2 keeps about these vaults' data (their objects go separately)."""
        keys = list(vault_keys_)
        if not keys:
            return
        for table in (vault_chunks, vault_packs, vault_maintenance, vault_keys):
            await self._conn.execute(delete(table).where(table.c.vault_key.in_(keys)))

    async def vaults_gone(self) -> list[str]:
        """Vaults whose resource is gone but whose data is still recorded (a purge did not finish)."""
        stored = (
            select(recovery_points.c.vault_key)
            .union(select(vault_packs.c.vault_key), select(vault_keys.c.vault_key))
            .subquery()
        )
        existing = select(resources.c.key).where(resources.c.kind == "backupVaults")
        stmt = select(stored.c.vault_key).where(stored.c.vault_key.not_in(existing))
        return [r[0] for r in (await self._conn.execute(stmt)).all()]

    async def vaults_with_packs(self) -> list[str]:
        stmt = select(vault_packs.c.vault_key).distinct()
        return [r[0] for r in (await self._conn.execute(stmt)).all()]

    async def maintenance_until(self, vault_key: str) -> float:
        """Until when the vault's maintenance lease is held (0 if not); in a PostgreSQL write
        transaction the lease row is held FOR SHARE, so an acquisition waits for this one."""
        await self._conn.execute(
            self._insert_ignoring(
                vault_maintenance, {"vault_key": vault_key, "owner": None, "until": 0.0}, ["vault_key"]
            )
        )
        stmt = select(vault_maintenance.c.until).where(vault_maintenance.c.vault_key == vault_key)
        if self._lock_rows:
            stmt = stmt.with_for_update(read=True)
        return float((await self._conn.execute(stmt)).scalar() or 0.0)

    async def acquire_maintenance(self, vault_key: str, owner: str, *, now: float, until: float) -> bool:
        """Take the vault's maintenance lease if it is free and no backup of the vault is writing."""
        await self._conn.execute(
            self._insert_ignoring(
                vault_maintenance, {"vault_key": vault_key, "owner": None, "until": 0.0}, ["vault_key"]
            )
        )
        stmt = select(vault_maintenance.c.owner, vault_maintenance.c.until).where(
            vault_maintenance.c.vault_key == vault_key
        )
        if self._lock_rows:
            stmt = stmt.with_for_update()
        row = (await self._conn.execute(stmt)).first()
        if row is not None and row[1] > now and row[0] != owner:
            return False
        writing = (
            select(func.count())
            .select_from(recovery_points)
            .where(recovery_points.c.vault_key == vault_key, recovery_points.c.state == "writing")
        )
        if int((await self._conn.execute(writing)).scalar() or 0):
            return False
        await self._conn.execute(
            update(vault_maintenance)
            .where(vault_maintenance.c.vault_key == vault_key)
            .values(owner=owner, until=until)
        )
        return True

    async def mark_dirty(self, vault_keys_: Sequence[str], *, now: float) -> None:
        """Points of these vaults were deleted: their garbage is to be collected."""
        for vault_key in dict.fromkeys(vault_keys_):
            await self._conn.execute(
                self._insert_ignoring(
                    vault_maintenance, {"vault_key": vault_key, "owner": None, "until": 0.0}, ["vault_key"]
                )
            )
            await self._conn.execute(
                update(vault_maintenance)
                .where(vault_maintenance.c.vault_key == vault_key)
                .values(dirty_since=now)
            )

    async def dirty_vaults(self) -> list[str]:
        stmt = select(vault_maintenance.c.vault_key).where(vault_maintenance.c.dirty_since.is_not(None))
        return [r[0] for r in (await self._conn.execute(stmt)).all()]

    async def clean(self, vault_key: str, *, before: float) -> None:
        """The vault's garbage as of ``before`` is collected (a deletion since keeps it dirty)."""
        await self._conn.execute(
            update(vault_maintenance)
            .where(vault_maintenance.c.vault_key == vault_key, vault_maintenance.c.dirty_since <= before)
            .values(dirty_since=None)
        )

    async def release_maintenance(self, vault_key: str, owner: str) -> None:
        await self._conn.execute(
            update(vault_maintenance)
            .where(vault_maintenance.c.vault_key == vault_key, vault_maintenance.c.owner == owner)
            .values(owner=None, until=0.0)
        )

    # -- backup jobs -------------------------------------------------------------------------

    async def insert_backup_job(self, **values: Any) -> None:
        await self._conn.execute(_INSERT_BACKUP_JOB, values)

    async def backup_job(self, job_id: str) -> BackupJobRow | None:
        stmt = _BACKUP_JOB_LOCKED if self._lock_rows else _BACKUP_JOB
        row = (await self._conn.execute(stmt, {"k_": job_id})).mappings().first()
        return BackupJobRow.from_mapping(row) if row else None

    async def update_backup_job(self, job_id: str, **values: Any) -> None:
        await self._conn.execute(_UPDATE_BACKUP_JOB, {"k_": job_id, **values})

    async def backup_jobs_in(
        self, vault_key: str, *, after_pk: int = 0, limit: int | None = None
    ) -> list[BackupJobRow]:
        stmt = (
            select(backup_jobs)
            .where(backup_jobs.c.vault_key == vault_key, backup_jobs.c.pk > after_pk)
            .order_by(backup_jobs.c.pk)
        )
        if limit is not None:
            stmt = stmt.limit(limit)
        return [BackupJobRow.from_mapping(r) for r in (await self._conn.execute(stmt)).mappings().all()]

    # -- identity ----------------------------------------------------------------------------

    async def client(self, client_id: str) -> dict[str, Any] | None:
        row = (
            (await self._conn.execute(select(clients).where(clients.c.client_id == client_id)))
            .mappings()
            .first()
        )
        return dict(row) if row else None

    async def add_client(self, **values: Any) -> None:
        await self._conn.execute(insert(clients).values(**values))

    async def list_clients(self) -> list[dict[str, Any]]:
        rows = (await self._conn.execute(select(clients).order_by(clients.c.created_at))).mappings().all()
        return [dict(r) for r in rows]

    async def delete_client(self, client_id: str) -> bool:
        return bool(
            (await self._conn.execute(delete(clients).where(clients.c.client_id == client_id))).rowcount
        )

    async def subscription(self, sub_id: str) -> dict[str, Any] | None:
        stmt = select(subscriptions).where(subscriptions.c.id == sub_id)
        row = (await self._conn.execute(stmt)).mappings().first()
        return dict(row) if row else None

    async def claim_subscription(
        self, sub_id: str, tenant: str, *, now: float, display_name: str = ""
    ) -> dict[str, Any]:
        """The subscription's row, created for ``tenant`` if nobody owns it yet."""
        existing = await self.subscription(sub_id)
        if existing is not None:
            return existing
        values = {
            "id": sub_id,
            "tenant": tenant,
            "display_name": display_name or f"dpvault {sub_id[:8]}",
            "created_at": now,
        }
        await self._conn.execute(insert(subscriptions).values(**values))
        return values

    async def tenants(self) -> list[str]:
        return list((await self._conn.execute(select(subscriptions.c.tenant).distinct())).scalars().all())

    async def subscriptions_of(self, tenant: str) -> list[dict[str, Any]]:
        stmt = select(subscriptions).where(subscriptions.c.tenant == tenant).order_by(subscriptions.c.id)
        return [dict(r) for r in (await self._conn.execute(stmt)).mappings().all()]

    async def touch_schema_version(self) -> None:
        """Rewrite the schema version row as it is: a write that changes nothing (``Store.probe``)."""
        await self._conn.execute(text("UPDATE alembic_version SET version_num = version_num"))

    # -- manual clock ------------------------------------------------------------------------

    async def clock(self) -> float | None:
        return (await self._conn.execute(select(clock_state.c.now).where(clock_state.c.id == 1))).scalar()

    async def set_clock(self, now: float) -> None:
        if await self.clock() is None:
            await self._conn.execute(insert(clock_state).values(id=1, now=now))
        else:
            await self._conn.execute(update(clock_state).where(clock_state.c.id == 1).values(now=now))

    # -- soft deletions (issue 13) -----------------------------------------------------------

    async def insert_soft_deletion(self, **values: Any) -> None:
        await self._conn.execute(insert(soft_deletions).values(**values))

    async def soft_deletion(self, key: str) -> SoftDeletionRow | None:
        stmt = select(soft_deletions).where(soft_deletions.c.key == key)
        row = (await self._conn.execute(stmt)).mappings().first()
        return SoftDeletionRow.from_mapping(row) if row else None

    async def postpone_soft_deletion(self, key: str, *, purge_at: float) -> None:
        await self._conn.execute(
            update(soft_deletions).where(soft_deletions.c.key == key).values(purge_at=purge_at)
        )

    async def delete_soft_deletion(self, key: str) -> None:
        await self._conn.execute(delete(soft_deletions).where(soft_deletions.c.key == key))

    async def due_soft_deletions(self, *, now: float, limit: int) -> list[SoftDeletionRow]:
        stmt = (
            select(soft_deletions)
            .where(soft_deletions.c.purge_at <= now)
            .order_by(soft_deletions.c.purge_at)
            .limit(limit)
        )
        rows = (await self._conn.execute(stmt)).mappings().all()
        return [SoftDeletionRow.from_mapping(r) for r in rows]

    async def next_soft_purge(self) -> float | None:
        return (await self._conn.execute(select(func.min(soft_deletions.c.purge_at)))).scalar()

    async def delete_soft_deletions_of_vaults_under(self, prefix: str) -> None:
        """Soft-deletion rows of vaults (and their instances) whose key starts with ``prefix`` (a
        resource group's key and ``/``): they go with the group."""
        await self._conn.execute(
            delete(soft_deletions).where(soft_deletions.c.vault_key.startswith(prefix, autoescape=True))
        )

    async def move_recovery_points(
        self, from_instance: str, to_instance: str, *, states: Sequence[str] = ("available",)
    ) -> int:
        """Re-key points' rows to another instance key (objects keep their keys)."""
        stmt = (
            update(recovery_points)
            .where(recovery_points.c.instance_key == from_instance, recovery_points.c.state.in_(states))
            .values(instance_key=to_instance)
        )
        return int((await self._conn.execute(stmt)).rowcount or 0)


def _expirable() -> tuple[Any, ...]:
    """Recovery points retention may delete: not in use by a running restore, not of a stopped instance
    (stop protection keeps data), and not already being deleted by someone else."""
    in_use = (
        select(backup_jobs.c.id)
        .where(backup_jobs.c.recovery_point_id == recovery_points.c.id, backup_jobs.c.status == "InProgress")
        .exists()
    )
    stopped = (
        select(protected_items.c.instance_key)
        .where(
            protected_items.c.instance_key == recovery_points.c.instance_key,
            protected_items.c.state == "stopped",
        )
        .exists()
    )
    return (recovery_points.c.state.in_(("available", "deleting")), ~in_use, ~stopped)


_EXPIRABLE = _expirable()  # built once: every scheduler tick uses it


def _by_keys(table: str, keys: list[Any], *, locked: bool) -> tuple[Any, dict[str, Any]]:
    """A batch statement over ``keys`` (and its parameters), built once per table and batch size
    as a fast statement: SQLAlchemy's own execution of an expanding IN cost ~150 us a statement,
    more than the per-row statements it replaces (bench P1, py-spy)."""
    cache_key = (table, len(keys), locked)
    stmt = _BATCH.get(cache_key)
    if stmt is None:
        binds = [bindparam(f"k{n}_") for n in range(len(keys))]
        if table == "jobs":  # mark done (state, finished_at, last_error come as parameters)
            stmt = (
                update(jobs)
                .where(jobs.c.id.in_(binds), jobs.c.lease_owner == bindparam("owner_"))
                .values(lease_owner=None, lease_expires_at=None)
            )
        else:
            t = resources if table == "resources" else operations
            column = t.c.key if table == "resources" else t.c.id
            stmt = select(t).where(column.in_(binds)).order_by(column)
            if locked:
                stmt = stmt.with_for_update()
        # Kept for good (never cleared: _FAST and the compile caches key on the statement's id);
        # batch sizes are bounded by the worker's concurrency, so this stays small.
        _BATCH[cache_key] = stmt
        _FAST.add(id(stmt))
    return stmt, {f"k{n}_": key for n, key in enumerate(keys)}


_BATCH: dict[tuple[str, int, bool], Any] = {}


# Column names per fast statement's SQL (SQLite and PostgreSQL SQL texts differ, so one map serves both).
_columns: dict[str, list[str] | None] = {}


def _column_names(cursor: Any, sql: str) -> list[str] | None:
    """A fast statement's column names (None: it returns no rows), looked up once per statement:
    both drivers build a cursor's description anew on every access."""
    if sql not in _columns:
        description = cursor.description
        _columns[sql] = [d[0] for d in description] if description else None
    return _columns[sql]


class _Rows:
    """Just enough of SQLAlchemy's Result for the Tx methods, over a driver cursor's rows; ``rows_as``
    builds row types positionally when the columns are exactly theirs."""

    __slots__ = ("_dicts", "_names", "_raw", "rowcount")

    def __init__(self, rowcount: int, names: list[str] | None, raw: list[Any]) -> None:
        self.rowcount = rowcount
        self._names = tuple(names) if names else ()
        self._raw = raw
        self._dicts: list[dict[str, Any]] | None = None

    @staticmethod
    def of(cursor: Any, sql: str) -> _Rows:
        """A fast statement's rows."""
        names = _column_names(cursor, sql)
        return _Rows(cursor.rowcount, names, cursor.fetchall() if names else [])

    def mappings(self) -> _Rows:
        return self

    def all(self) -> list[dict[str, Any]]:
        if self._dicts is None:
            names = self._names
            self._dicts = [dict(zip(names, row, strict=True)) for row in self._raw]
        return self._dicts

    def first(self) -> dict[str, Any] | None:
        return self.all()[0] if self._raw else None

    def scalar(self) -> Any:
        return self._raw[0][0] if self._raw else None

    def rows_as(self, cls: type[R]) -> list[R]:
        if self._names == cls.__struct_fields__:
            return [cls(*row) for row in self._raw]
        return [cls.from_mapping(m) for m in self.all()]


_SQLITE = sqlite_dialect.dialect(paramstyle="named")
_PG = pg_psycopg.dialect()
_compiled_pg: dict[tuple[int, frozenset[str]], tuple[str, dict[str, Any]]] = {}
_compiled: dict[tuple[int, frozenset[str]], tuple[str, dict[str, Any]]] = {}


def _sql_for(stmt: Any, params: Any, dialect: Any, cache: dict[Any, Any]) -> tuple[str, dict[str, Any]]:
    """A hot statement's SQL for ``dialect``, compiled once per set of parameter names, and its
    parameters with the statement's defaults filled in."""
    names = frozenset(params or ())
    cached = cache.get((id(stmt), names))
    if cached is None:
        compiled = stmt.compile(dialect=dialect, column_keys=sorted(names))
        cached = cache[(id(stmt), names)] = (str(compiled), dict(compiled.params))
    sql, defaults = cached
    return sql, {**defaults, **(params or {})}


class _InLoop:
    """A synchronous SQLite connection behind the async Tx interface.

    SQLite statements take microseconds; running them on the event-loop thread is several times
    cheaper than a thread hop per statement (aiosqlite), measured in ``bench``. Transaction bodies
    only await Tx methods, so a write transaction runs to completion without interleaving.

    The hot statements (``_FAST``, built once by SQLAlchemy) are compiled to SQL once per set of
    parameter names and run on the sqlite3 connection directly: SQLAlchemy's per-execution work
    cost more than the statements themselves (bench P1, py-spy). Everything else goes through
    SQLAlchemy as usual, in the same transaction.
    """

    __slots__ = ("_conn", "_raw")

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._raw = conn.connection.driver_connection

    async def execute(self, stmt: Any, params: Any = None) -> Any:
        if id(stmt) in _FAST:
            sql, merged = _sql_for(stmt, params, _SQLITE, _compiled)
            return _Rows.of(self._raw.execute(sql, merged), sql)
        return self._conn.execute(stmt, params)


class _PgFast:
    """The PostgreSQL twin of ``_InLoop``'s fast path: hot statements compiled once, run on the
    psycopg AsyncConnection under SQLAlchemy's transaction (same connection, so the same
    transaction). Driver errors are translated into SQLAlchemy's, for ``Store.transact``'s retries."""

    __slots__ = ("_conn", "_cursor")

    def __init__(self, conn: AsyncConnection, raw: Any) -> None:
        self._conn = conn
        # One cursor for the transaction (statements run one at a time, each result is fetched
        # before the next): psycopg's connection.execute makes a cursor per statement.
        self._cursor = raw.cursor()

    @staticmethod
    async def open(conn: AsyncConnection) -> _PgFast:
        return _PgFast(conn, (await conn.get_raw_connection()).driver_connection)

    async def execute(self, stmt: Any, params: Any = None) -> Any:
        if id(stmt) in _FAST:
            sql, merged = _sql_for(stmt, params, _PG, _compiled_pg)
            cursor = self._cursor
            try:
                await cursor.execute(sql, merged)
                names = _column_names(cursor, sql)
                return _Rows(cursor.rowcount, names, await cursor.fetchall() if names else [])
            except psycopg.Error as exc:
                raise DBAPIError.instance(sql, merged, exc, psycopg.Error) from exc
        return await self._conn.execute(stmt, params)


# Statements _InLoop runs on sqlite3 directly. Their tables hold no types sqlite3 returns differently
# from SQLAlchemy (no Boolean, no DateTime).
_FAST = {
    id(s)
    for s in (
        _RESOURCE, _RESOURCES_3, _INSERT_RESOURCE, _UPDATE_RESOURCE, _DELETE_RESOURCE, _OPERATION,
        _INSERT_OPERATION, _UPDATE_OPERATION, _INSERT_JOB, _CLAIM, _FINISH_JOB, _RENEW_LEASE, _NEXT_READY,
        _PROTECTED, _UPDATE_PROTECTED, _RESOURCE_LOCKED, _RESOURCE_SHARED, _RESOURCES_3_SHARED, _OPERATION_LOCKED,
        _PROTECTED_LOCKED, _CLAIM_PG, _UPSERT_PROTECTED_SQLITE, _UPSERT_PROTECTED_PG,
    )
}  # fmt: skip


class Store:
    """The state store. A Store belongs to the event loop that first writes through it (its write
    lock and SQLite checkpoints do); open one per loop."""

    def __init__(self, url: str) -> None:
        self.url = url
        # Since when writes fail for lack of space (monotonic), None while they do not.
        self._full_since: float | None = None
        self.postgres = not engines.is_sqlite(url)
        if self.postgres:
            self._reader, self._writer = engines.make_engines(url)
        else:
            self._sync_reader, self._sync_writer = engines.make_sqlite_engines(url)
            # The one writer connection stays checked out: a pool checkout and a new Connection
            # per transaction cost more than the transaction's statements (bench P1).
            self._writer_conn = self._sync_writer.connect()
            self._write_lock = asyncio.Lock()
            path = engines.sqlite_file(url)
            self._checkpointer = checkpoint.Checkpointer(path, self._write_lock) if path else None

    async def listen(self, wake: Callable[[], None]) -> None:
        """PostgreSQL only: call ``wake`` whenever any process enqueues a job (LISTEN/NOTIFY).
        Runs until cancelled; reconnects after errors."""
        import psycopg
        from sqlalchemy.engine import make_url

        url = make_url(self.url)
        conninfo = psycopg.conninfo.make_conninfo(
            host=url.host or "", port=str(url.port or ""), dbname=url.database or "", user=url.username or "",
            password=url.password or "", **{k: str(v) for k, v in url.query.items()},
        )  # fmt: skip
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {JOBS_CHANNEL}")
                    wake()  # anything enqueued while we were not listening
                    async for _ in conn.notifies():
                        wake()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Workers still poll meanwhile; say why wake-ups are late.
                log.warning("job notifications lost; reconnecting", error=type(exc).__name__)
                await asyncio.sleep(1.0)

    @staticmethod
    async def open(url: str, *, migrate: bool = True) -> Store:
        """Migrate the schema (in a thread: Alembic is synchronous), unless the caller already
        did, and connect."""
        if migrate:
            await asyncio.to_thread(engines.migrate, url)
        return Store(url)

    async def close(self) -> None:
        if self.postgres:
            await self._reader.dispose()
            if self._writer is not self._reader:
                await self._writer.dispose()
        else:
            if self._checkpointer is not None:
                await self._checkpointer.close()
            self._sync_reader.dispose()
            self._writer_conn.close()
            self._sync_writer.dispose()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Tx]:
        if self.postgres:
            async with self._reader.connect() as conn:
                yield Tx(await _PgFast.open(conn), writable=False, postgres=True)  # type: ignore[arg-type]
                await conn.rollback()
            return
        with self._sync_reader.connect() as sync_conn:
            try:
                yield Tx(_InLoop(sync_conn), writable=False, postgres=False)
            finally:
                sync_conn.rollback()

    async def transact(self, fn: Callable[[Tx], Awaitable[T]], *, attempts: int = 5) -> T:
        """Run ``fn`` in a write transaction; retried on conflicts (up to ``attempts``) and, on
        SQLite, while another process holds the write lock (up to LOCKED_FOR seconds, waiting
        asynchronously: SQLite's own busy wait would block the event loop).

        What the database says is translated here, at the seam: conflicts that outlast the retries
        are a 409, a lock held too long a 503, and a database out of space (SQLITE_FULL, PostgreSQL
        ``disk_full``) a 507 :class:`~dpvault.errors.StateStoreFullError` (the transaction rolled back:
        nothing of it was written) that also marks the store not :attr:`healthy`."""
        attempt = 0
        locked_until: float | None = None
        while True:
            try:
                if self.postgres:
                    async with self._writer.begin() as conn:
                        result = await fn(Tx(await _PgFast.open(conn), writable=True, postgres=True))  # type: ignore[arg-type]
                else:
                    # One writer at a time, waiting without blocking the loop.
                    async with self._write_lock:
                        sync_conn = self._writer_conn
                        try:
                            with sync_conn.begin():
                                result = await fn(Tx(_InLoop(sync_conn), writable=True, postgres=False))
                        except BaseException:
                            _end_sqlite_transaction(sync_conn)
                            raise
                    if self._checkpointer is not None:
                        self._checkpointer.committed()
                if self._full_since is not None:
                    waited = round(time.monotonic() - self._full_since, 1)
                    log.warning("state database writable again", full_for_s=waited)
                    self._full_since = None
                return result
            except (DBAPIError, sqlite3.Error) as exc:
                if _out_of_space(exc):
                    if self._full_since is None:
                        self._full_since = time.monotonic()
                        log.error("state database out of space; writes are refused", error=_reason(exc))
                    raise errors.StateStoreFullError() from exc
                if not self.postgres and _locked(exc):
                    now = time.monotonic()
                    locked_until = locked_until or now + LOCKED_FOR
                    if now > locked_until:
                        raise errors.busy("The state database stayed locked by another process.") from exc
                    await asyncio.sleep(0.01)
                    continue
                if _lock_timeout(exc):
                    raise errors.busy("A row this request needs stayed locked by other work.") from exc
                attempt += 1
                if not _retryable(exc):
                    raise
                if attempt >= attempts:
                    if _conflict(exc):
                        raise errors.conflict(
                            "Concurrent requests changed the same resources; retry the request.",
                            code="ConcurrentRequestConflict",
                        ) from exc
                    raise
            # A little jitter, so writers that collided do not collide again in step.
            await asyncio.sleep(0.005 * attempt * (0.5 + random.random()))  # noqa: S311 - not security

    @property
    def healthy(self) -> bool:
        """False from a write that failed for lack of space until a write succeeds again (or
        :meth:`probe` finds room): what a readiness check reports. Reads keep working meanwhile."""
        return self._full_since is None

    async def probe(self) -> bool:
        """Try a write that changes nothing (the schema version row rewritten as it is), to find out
        whether the database takes writes again; returns :attr:`healthy`. For a readiness check
        while the store is not healthy (no client writes come then to clear it). A small write: on
        PostgreSQL it may fit into a page the table has while larger writes still fail (they mark
        the store unhealthy again)."""

        async def rewrite(tx: Tx) -> None:
            await tx.touch_schema_version()

        with contextlib.suppress(errors.StateStoreFullError):
            await self.transact(rewrite, attempts=1)
        return self.healthy


# How long a write waits for another process's SQLite write lock before failing.
LOCKED_FOR = 10.0


def _end_sqlite_transaction(conn: Any) -> None:
    """After a failed SQLite transaction, make sure none is left open on the writer connection: a
    COMMIT that fails (SQLITE_FULL) may leave it open, and the next BEGIN IMMEDIATE would fail."""
    raw = conn.connection.driver_connection
    if raw is not None and raw.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            raw.execute("ROLLBACK")


def _locked(exc: Exception) -> bool:
    """SQLite's busy error, raised through SQLAlchemy or straight from sqlite3 (``_InLoop``)."""
    return (
        isinstance(exc, OperationalError | sqlite3.OperationalError)
        and "database is locked" in str(getattr(exc, "orig", exc)).lower()
    )


def _driver_error(exc: Exception) -> Exception:
    return getattr(exc, "orig", None) or exc


def _out_of_space(exc: Exception) -> bool:
    """SQLITE_FULL, or PostgreSQL's disk_full (53100: a table, index or temporary file could not grow)."""
    orig = _driver_error(exc)
    if isinstance(orig, sqlite3.Error):
        return getattr(orig, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(orig)
    return getattr(orig, "sqlstate", None) == "53100"


def _lock_timeout(exc: Exception) -> bool:
    return getattr(_driver_error(exc), "sqlstate", None) == "55P03"  # lock_not_available


def _reason(exc: Exception) -> str:
    return str(_driver_error(exc)).splitlines()[0][:200]


def _conflict(exc: Exception) -> bool:
    text = str(_driver_error(exc)).lower()
    return any(s in text for s in ("could not serialize", "deadlock detected"))


def _retryable(exc: Exception) -> bool:
    return isinstance(exc, IntegrityError | sqlite3.IntegrityError) or _conflict(exc)

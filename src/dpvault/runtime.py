"""The runtime: everything a dpvault process runs besides HTTP, built in one visible order.

``serve`` runs it under the API; ``dpvault worker`` runs it alone (more workers on one database).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from dpvault.clock import Clock, ManualClock
from dpvault.datastores import LocalDatastore
from dpvault.jobs.worker import JobType, Worker
from dpvault.protection.postgres import PostgresEngine, find_tools
from dpvault.protection.restore import Restorer
from dpvault.protection.restore_jobs import JOB_RESTORE, JOB_VALIDATE_RESTORE, RestoreJobs
from dpvault.protection.retention import Retention
from dpvault.protection.scheduler import Scheduler
from dpvault.protection.service import JOB_BACKUP, JOB_DRILL, Protection
from dpvault.protection.timekeeper import Timekeeper
from dpvault.resources.instances import lifecycle
from dpvault.resources.vaults import handlers as vault_handlers
from dpvault.secrets import SecretProvider, SecretResolver
from dpvault.secrets.local import LocalSecretStore, load_key
from dpvault.services import Services
from dpvault.settings import Settings
from dpvault.store import Store


def job_types(protection: Protection, restores: RestoreJobs) -> dict[str, JobType]:
    def bound(method: Any) -> Any:
        """A job handler (or give-up) from a method that needs no Services argument."""

        async def run(_svc: Services, payload: dict[str, Any], *reason: str) -> None:
            await method(payload, *reason)

        return run

    restore_give_up = bound(restores.give_up)
    return {
        JOB_RESTORE: JobType(bound(restores.restore), restore_give_up),
        JOB_VALIDATE_RESTORE: JobType(bound(restores.validate), restore_give_up),
        JOB_DRILL: JobType(bound(restores.drill), restore_give_up),
        lifecycle.JOB_SYNC: JobType(lifecycle.sync, lifecycle.give_up),
        vault_handlers.JOB_PROVISION: JobType(vault_handlers.provision, vault_handlers.give_up),
        lifecycle.JOB_CONFIGURE: JobType(lifecycle.configure, lifecycle.give_up, lifecycle.configure_many),
        lifecycle.JOB_DELETE: JobType(lifecycle.delete, lifecycle.give_up),
        lifecycle.JOB_VALIDATE: JobType(lifecycle.validate, lifecycle.give_up),
        JOB_BACKUP: JobType(bound(protection.run_backup), bound(protection.give_up_backup)),
    }


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.services: Services | None = None
        self.worker: Worker | None = None
        self.scheduler: Scheduler | None = None
        self.timekeeper: Timekeeper | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> Services:
        settings = self.settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        # 1. state (migrations run here)
        store = await Store.open(settings.resolved_database_url, migrate=not settings.migrated)
        # 2. the clock: real, or manual (shared through the database)
        clock: Clock = ManualClock(Clock().time()) if settings.clock == "manual" else Clock()
        # 3. services shared by handlers and jobs
        svc = Services(
            settings=settings,
            store=store,
            clock=clock,
            wake_worker=self._wake,
            wake_scheduler=self._wake_scheduler,
        )
        self.services = svc
        # 4. protection: secrets, the PostgreSQL engine, the vault datastore, schedules, retention
        providers: list[SecretProvider] = [LocalSecretStore(store, load_key(settings.identity_dir))]
        if settings.key_vault:
            from dpvault.secrets.keyvault import KeyVaultSecrets

            providers.append(KeyVaultSecrets(tenants={settings.tenant_id}))
        datastore = LocalDatastore(settings.vault_store_dir)
        protection = Protection(
            svc, PostgresEngine(find_tools(settings.pg_dump)), datastore, SecretResolver(providers)
        )
        svc.protection = protection
        restores = RestoreJobs(svc, Restorer(protection, settings.restore_dirs))
        self.scheduler = Scheduler(protection, Retention(svc, datastore))
        if isinstance(clock, ManualClock):
            self.timekeeper = Timekeeper(svc, clock, self.scheduler)
            await self.timekeeper.load()
            self._tasks.append(asyncio.create_task(self.timekeeper.follow()))
        # 5. background work: the job worker and the scheduler
        if settings.run_worker:
            self.worker = Worker(svc, job_types(protection, restores))
            self._tasks.append(asyncio.create_task(self.worker.run()))
            if store.postgres:
                self._tasks.append(asyncio.create_task(store.listen(self.worker.wake)))
            self._tasks.append(asyncio.create_task(self.scheduler.run()))  # its first pass sweeps
        return svc

    def _wake(self) -> None:
        if self.worker is not None:
            self.worker.wake()

    def _wake_scheduler(self, at: float | None = None) -> None:
        if self.scheduler is not None:
            self.scheduler.wake(at)

    async def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.stop()
        if self.worker is not None:
            await self.worker.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.services is not None:
            await self.services.store.close()

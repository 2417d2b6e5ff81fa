"""The runtime: everything a dpvault process runs besides HTTP, built in one visible order.

``serve`` runs it under the API; ``dpvault worker`` runs it alone (more workers on one database).
Every kind of queued job is registered here, in ``job_types``.
"""

from __future__ import annotations

import asyncio
import contextlib

from dpvault import allocator
from dpvault.alerts import Alerts
from dpvault.clock import Clock, ManualClock
from dpvault.datastores.base import DatastoreError
from dpvault.datastores.urls import open_datastore
from dpvault.engines.blobs.engine import BlobContainerEngine
from dpvault.engines.postgres import PostgresEngine, find_tools
from dpvault.engines.postgres.flexible import FlexibleServerEngine
from dpvault.engines.registry import Engines
from dpvault.jobs.worker import Claimed, JobType, Worker
from dpvault.model import payloads
from dpvault.protection.restore import RestoreJobs
from dpvault.protection.restore_blobs import BlobRestorer
from dpvault.protection.restore_files import FileRestorer
from dpvault.protection.retention import Retention
from dpvault.protection.scheduler import Scheduler
from dpvault.protection.service import Protection
from dpvault.protection.timekeeper import Timekeeper
from dpvault.resources.instances.lifecycle import InstanceJobs
from dpvault.resources.vaults.handlers import VaultJobs
from dpvault.secrets import SecretProvider, SecretResolver
from dpvault.secrets.local import LocalSecretStore, load_key
from dpvault.services import Services
from dpvault.settings import Settings
from dpvault.store import Store
from dpvault.vault.keys import VaultKeys, load_local_kek
from dpvault.vault.points import RecoveryPoints


def job_types(svc: Services, protection: Protection, restores: RestoreJobs) -> dict[str, JobType]:
    """Every kind of job, by the kind its payload names: how it runs, gives up, and decodes."""
    instances = InstanceJobs(svc, protection)
    vaults = VaultJobs(svc)

    async def purge(job: Claimed[payloads.PurgeVaults]) -> None:
        try:
            await protection.points.delete_vaults(job.payload.vaults)
        except DatastoreError as exc:  # a refusing store is fixed by its operator: keep trying
            raise RuntimeError(f"the vault store refused a delete: {exc}") from None

    alerts = Alerts(svc)
    kinds = [
        (payloads.PurgeVaults, JobType(purge)),
        (payloads.ProvisionVault, JobType(vaults.provision, vaults.give_up)),
        (
            payloads.ConfigureInstance,
            JobType(instances.configure, instances.give_up, instances.configure_many),
        ),
        (payloads.DeleteInstance, JobType(instances.delete, instances.give_up)),
        (payloads.ValidateForBackup, JobType(instances.validate, instances.give_up)),
        (payloads.SyncInstance, JobType(instances.sync, instances.give_up)),
        (payloads.Backup, JobType(protection.backups.run, protection.backups.give_up)),
        (payloads.RestoreDrill, JobType(protection.drills.run, protection.drills.give_up)),
        (payloads.Restore, JobType(restores.restore, restores.give_up)),
        (payloads.ValidateRestore, JobType(restores.validate, restores.give_up)),
        (payloads.JobFailureAlert, JobType(alerts.job_failed)),
        (payloads.AlertDelivery, JobType(alerts.deliver, alerts.give_up)),
    ]
    return {
        payload.kind: JobType(job.run, job.give_up, job.run_many, payload=payload) for payload, job in kinds
    }


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.services: Services | None = None
        self.protection: Protection | None = None
        self.worker: Worker | None = None
        self.scheduler: Scheduler | None = None
        self.timekeeper: Timekeeper | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> Services:
        settings = self.settings
        allocator.tune()  # large buffers go back to the system when freed: RSS stays flat in backups
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
        # 4. the protection core: the vault (datastore + recovery points), the engines, secrets
        lease = settings.lease_seconds
        datastore = open_datastore(
            settings.vault_store_url, data_dir_default=settings.data_dir / "vault",
            heartbeat=max(0.5, lease / 3), tmp_dir=settings.data_dir / "tmp",
        )  # fmt: skip
        local_secrets = LocalSecretStore(store, load_key(settings.identity_dir))
        keys = VaultKeys(store, datastore, load_local_kek(settings.identity_dir), local_secrets)
        points = RecoveryPoints(
            store, datastore, grace=2 * lease, keys=keys, tmp_dir=settings.data_dir / "tmp"
        )
        tools = find_tools(settings.pg_dump)
        engines = Engines([PostgresEngine(tools), FlexibleServerEngine(tools), BlobContainerEngine()])
        providers: list[SecretProvider] = [local_secrets]
        if settings.key_vault:
            from dpvault.secrets.keyvault import KeyVaultSecrets  # optional extra: azure-keyvault-secrets

            providers.append(KeyVaultSecrets(tenants={settings.tenant_id}))
        protection = self.protection = Protection(
            svc, engines, points, SecretResolver(providers), local_secrets
        )
        blobs = BlobRestorer(points, protection.sources)
        restores = RestoreJobs(
            svc,
            engines,
            protection.credentials,
            points,
            FileRestorer(points, settings.restore_dirs),
            blobs,
            protection.sources,
        )
        self.scheduler = Scheduler(protection, Retention(svc, points))
        if isinstance(clock, ManualClock):
            self.timekeeper = Timekeeper(svc, clock, self.scheduler)
            await self.timekeeper.load()
            self._tasks.append(asyncio.create_task(self.timekeeper.follow()))
        # 5. background work: the job worker and the scheduler
        if settings.run_worker:
            self.worker = Worker(svc, job_types(svc, protection, restores))
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

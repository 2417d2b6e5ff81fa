"""The protection core as the ARM handlers see it: validation, scheduling an instance's backups,
and the backup and drill pipelines, on top of the engines and the vault."""

from __future__ import annotations

from dpvault.engines.base import Engine
from dpvault.engines.registry import Engines
from dpvault.errors import UserError
from dpvault.model.instances.schema import BackupInstance
from dpvault.protection.backup import Backups
from dpvault.protection.credentials import Credentials
from dpvault.protection.drills import Drills
from dpvault.protection.planning import Planner
from dpvault.protection.softdelete import SoftDeletes
from dpvault.protection.sources import Sources
from dpvault.secrets import SecretResolver
from dpvault.secrets.local import LocalSecretStore
from dpvault.services import Services
from dpvault.store import ResourceRow, Tx
from dpvault.vault.points import RecoveryPoints


def not_backed_up(datasource_type: str | None) -> UserError:
    """What an instance of a datasource type no engine serves says about itself."""
    return UserError(
        "UserErrorDatasourceTypeNotSupported",
        f"dpvault has no backup engine for datasource type '{datasource_type}': the backup instance is "
        "configured (shallowly validated) but no backups are taken.",
        "Protect a datasource type dpvault backs up (Microsoft.DBforPostgreSQL/servers/databases, "
        "Microsoft.DBforPostgreSQL/flexibleServers or Microsoft.Storage/storageAccounts/blobServices).",
    )


class Protection:
    def __init__(
        self,
        svc: Services,
        engines: Engines,
        points: RecoveryPoints,
        secrets: SecretResolver,
        local_secrets: LocalSecretStore | None = None,
    ) -> None:
        """``local_secrets``: where source mappings live (``dpvault sources``); without it none are."""
        self.svc = svc
        self.engines = engines
        self.points = points
        self.credentials = Credentials(svc, secrets)
        self.sources = Sources(self.credentials, local_secrets)
        self.planner = Planner()
        self.drills = Drills(svc, engines, self.credentials, points)
        self.backups = Backups(svc, engines, self.credentials, points, self.drills, self.sources)
        self.soft_deletes = SoftDeletes(svc, points)

    def engine_for(self, bi: BackupInstance) -> Engine | None:
        return self.engines.for_type(bi.dataSourceInfo.datasourceType)

    async def validate(self, bi: BackupInstance, subscription: str) -> None:
        """The deep checks of the instance's engine (none for a type no engine serves). UserError."""
        engine = self.engine_for(bi)
        if engine is None:
            return
        params = await self.sources.params(bi, subscription, engine)
        await engine.validate(params, bi.dataSourceInfo)

    async def protect(
        self, tx: Tx, instance: ResourceRow, policy_row: ResourceRow, *, backed_up: bool = True
    ) -> float | None:
        """Start (or restart) an instance's schedule: the next occurrence after now, no catch-up.
        Returns when it is next due (for waking the scheduler after the commit). An instance no
        engine backs up (``backed_up`` false) gets no schedule."""
        if not backed_up:
            await tx.delete_protected_item(instance.key)
            return None
        now = self.svc.now()
        latest, _, next_due = self.planner.plan(policy_row, now)
        await tx.upsert_protected_item(
            instance.key,
            vault_key=instance.parent_key,
            policy_key=policy_row.key,
            state="active",
            last_occurrence=latest,
            next_due_at=next_due,
            updated_at=now,
        )
        return next_due

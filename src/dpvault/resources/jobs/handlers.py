"""Backup job routes: ``GET …/backupVaults/{v}/backupJobs`` (paged) and ``…/backupJobs/{jobId}``."""

from __future__ import annotations

from dpvault import errors
from dpvault.arm import ids, paging
from dpvault.arm.http import Call, Reply, encode
from dpvault.resources.common import check_provider_call
from dpvault.resources.jobs import render
from dpvault.resources.vaults.lookups import require_vault
from dpvault.services import Services

RESOURCE_TYPE = "backupVaults/backupJobs"


class JobRoutes:
    def __init__(self, svc: Services) -> None:
        self.svc = svc

    def _vault(self, call: Call) -> tuple[str, str, str]:
        p = call.params
        return (
            p["subscriptionId"],
            ids.check_resource_group(p["resourceGroupName"]),
            ids.check_resource_name(p["vaultName"], "backup vault"),
        )

    async def list(self, call: Call) -> Reply:
        check_provider_call(self.svc, call, RESOURCE_TYPE)
        sub, rg, vault = self._vault(call)
        after, size = paging.window(call, self.svc.settings.page_size)
        async with self.svc.store.read() as tx:
            vault_row = await require_vault(tx, sub, rg, vault)
            rows = await tx.backup_jobs_in(vault_row.key, after_pk=after, limit=size + 1)
        more = len(rows) > size
        rows = rows[:size]
        vault_id = ids.vault_id(sub, rg, vault_row.name)
        now = self.svc.now()
        items = [encode(render.render(r, vault_id, now)) for r in rows]
        return Reply.json(200, paging.body(call, items, str(rows[-1].pk) if more else None))

    async def get(self, call: Call) -> Reply:
        check_provider_call(self.svc, call, RESOURCE_TYPE)
        sub, rg, vault = self._vault(call)
        job_id = call.params["jobId"]
        async with self.svc.store.read() as tx:
            vault_row = await require_vault(tx, sub, rg, vault)
            row = await tx.backup_job(job_id.lower())
        if row is None or row.vault_key != vault_row.key:
            raise errors.resource_not_found(
                f"Microsoft.DataProtection/backupVaults/{vault}/backupJobs/{job_id}", rg
            )
        return Reply.json(200, render.render(row, ids.vault_id(sub, rg, vault_row.name), self.svc.now()))

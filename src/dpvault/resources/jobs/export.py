"""``POST …/backupVaults/{v}/exportBackupJobs`` (202 with Location) and
``GET …/backupVaults/{v}/backupJobs/operations/{operationId}`` (200 ExportJobsResult).

The report is the vault's backup jobs as of the export, as CSV, served by dpvault itself at
``…/backupJobs/operations/{operationId}/jobs.csv`` (authenticated like every route: the bearer
token, not a SAS; ``blobSasKey`` is empty). Both ``blobUrl`` and ``excelFileBlobUrl`` name it:
dpvault writes no .xlsx (Excel opens the CSV).
"""

from __future__ import annotations

import csv
import io

from dpvault import errors
from dpvault.arm import ids
from dpvault.arm.http import Call, Reply
from dpvault.clock import from_timestamp
from dpvault.model import operations
from dpvault.model.vaults.rules import vault_location
from dpvault.resources.common import check_provider_call, fingerprint
from dpvault.resources.jobs import render
from dpvault.resources.vaults.lookups import require_vault
from dpvault.services import Services
from dpvault.store import OperationRow, Tx
from dpvault.types import OperationKind, OperationStatus

COLUMNS = (
    "jobId", "operation", "operationCategory", "status", "startTime", "endTime", "duration",
    "backupInstanceFriendlyName", "backupInstanceId", "dataSourceName", "dataSourceType", "policyName",
    "isUserTriggered", "dataTransferredInBytes", "errorCode", "errorMessage",
)  # fmt: skip


def _names(call: Call) -> tuple[str, str, str]:
    p = call.params
    return (
        p["subscriptionId"],
        ids.check_resource_group(p["resourceGroupName"]),
        ids.check_resource_name(p["vaultName"], "backup vault"),
    )


def _operation_path(scope: operations.Scope, op_id: str) -> str:
    return ids.url_path(
        "subscriptions", scope.subscription, "resourceGroups", scope.resource_group, "providers",
        "Microsoft.DataProtection", "backupVaults", scope.vault, "backupJobs", "operations", op_id,
    )  # fmt: skip


class ExportRoutes:
    def __init__(self, svc: Services) -> None:
        self.svc = svc

    async def export(self, call: Call) -> Reply:
        version = check_provider_call(self.svc, call, "backupVaults/exportBackupJobs")
        sub, rg, vault = _names(call)

        async def write(tx: Tx) -> tuple[str, operations.Scope]:
            vault_row = await require_vault(tx, sub, rg, vault)
            scope = operations.Scope(sub, rg, vault, vault_location(vault_row))
            now = self.svc.now()
            op = await operations.start(
                tx, now=now, kind=OperationKind.EXPORT, scope=scope, resource_key=vault_row.key,
                resource_path=ids.vault_id(sub, rg, vault_row.name), api_version=version,
                request_hash=fingerprint("exportBackupJobs", now),
            )  # fmt: skip
            report = call.base_url + _operation_path(scope, op.id) + "/jobs.csv"
            result = {
                "blobUrl": report,
                "blobSasKey": "",
                "excelFileBlobUrl": report,
                "excelFileBlobSasKey": "",
            }
            await operations.finish(
                tx, op.id, now=now, status=OperationStatus.SUCCEEDED, result=result, op=op
            )
            return op.id, scope

        op_id, scope = await self.svc.store.transact(write)
        location = call.base_url + _operation_path(scope, op_id) + f"?api-version={version}"
        return Reply.empty(202, {"Location": location, "Retry-After": str(self.svc.settings.retry_after)})

    async def _export_op(self, call: Call) -> tuple[OperationRow, str]:
        sub, rg, vault = _names(call)
        op_id = call.params["operationId"]
        async with self.svc.store.read() as tx:
            vault_row = await require_vault(tx, sub, rg, vault)
            op = await tx.operation(op_id) if len(op_id) <= 200 else None
        if op is None or op.kind != OperationKind.EXPORT or op.vault_key != vault_row.key:
            raise errors.operation_not_found(ids.printable(op_id))
        return op, vault_row.key

    async def result(self, call: Call) -> Reply:
        check_provider_call(self.svc, call, "backupVaults/backupJobs/operations")
        op, _ = await self._export_op(call)
        return Reply.json(200, op.result or b"{}")

    async def report(self, call: Call) -> Reply:
        """The CSV: every backup job of the vault that had started when the export was asked for."""
        op, vault = await self._export_op(call)
        sub, rg, name = _names(call)
        async with self.svc.store.read() as tx:
            rows = await tx.backup_jobs_in(vault)
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
        vault_id = ids.vault_id(sub, rg, name)
        for row in rows:
            if row.start_time > op.start_time:
                continue
            props = render.render(row, vault_id, op.start_time)["properties"]
            error = (props.get("errorDetails") or [{}])[0]
            writer.writerow([
                row.id, row.operation, row.category, row.status, props["startTime"],
                from_timestamp(row.end_time) if row.end_time is not None else "", props["duration"],
                props.get("backupInstanceFriendlyName", ""), props.get("backupInstanceId", ""),
                props.get("dataSourceName", ""), props.get("dataSourceType", ""), props.get("policyName", ""),
                str(row.user_triggered).lower(), row.bytes if row.bytes is not None else "",
                error.get("code", ""), error.get("message", ""),
            ])  # fmt: skip
        headers = {
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="exportjobsreport{op.id}.csv"',
        }
        return Reply(200, out.getvalue().encode(), headers)

"""Backup-job records (Azure's ``backupJobs``).

A record is written when the work is asked for (same transaction as the request or schedule tick)
and finished by whoever does the work, so ``backupJobs`` shows it InProgress meanwhile. How a record
is rendered as an ARM resource is ``resources/jobs/render.py``.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import msgspec
import structlog

from dpvault.model import payloads
from dpvault.model.instances.schema import BackupInstance
from dpvault.model.vaults.rules import decode_vault
from dpvault.store import BackupJobRow, Tx

log = structlog.get_logger("dpvault.jobs")

IN_PROGRESS = "InProgress"
COMPLETED = "Completed"
FAILED = "Failed"

_RG = re.compile(r"/subscriptions/([^/]+)/resourceGroups/([^/]+)/", re.IGNORECASE)


def _source(bi: BackupInstance | None) -> dict[str, Any]:
    if bi is None:
        return {}
    ds = bi.dataSourceInfo
    match = _RG.search(ds.resourceID + "/")
    info: dict[str, Any] = {
        "dataSourceId": ds.resourceID,
        "dataSourceName": ds.resourceName or ds.resourceID.rstrip("/").rsplit("/", 1)[-1],
        "dataSourceType": ds.datasourceType or ds.resourceType or "",
        "dataSourceLocation": ds.resourceLocation or "",
        "sourceResourceGroup": match.group(2) if match else "",
        "sourceSubscriptionID": match.group(1) if match else "",
        "backupInstanceFriendlyName": bi.friendlyName or ds.resourceName or "",
        "policyId": bi.policyInfo.policyId,
        "policyName": bi.policyInfo.policyId.rstrip("/").rsplit("/", 1)[-1],
    }
    if bi.dataSourceSetInfo is not None:
        info["dataSourceSetName"] = bi.dataSourceSetInfo.resourceName or ""
    return info


async def create(
    tx: Tx,
    *,
    now: float,
    subscription: str,
    vault_key: str,
    vault_name: str,
    instance_key: str | None,
    instance_id: str | None,
    instance: BackupInstance | None,
    operation: str,
    category: str,
    user_triggered: bool,
    details: dict[str, str] | None = None,
    job_id: str | None = None,
    start_time: float | None = None,
    recovery_point_id: str | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """``extra``: further AzureBackupJob properties (restoreType, ...) and ``extendedInfo`` fields."""
    job_id = job_id or str(uuid.uuid4())
    info: dict[str, Any] = {
        "subscriptionId": subscription,
        "vaultName": vault_name,
        **_source(instance),
        **(extra or {}),
        "additionalDetails": details or {},
    }
    if instance_id:
        info["backupInstanceId"] = instance_id
    await tx.insert_backup_job(
        id=job_id,
        vault_key=vault_key,
        instance_key=instance_key,
        operation=operation,
        category=category,
        status=IN_PROGRESS,
        user_triggered=user_triggered,
        start_time=now if start_time is None else start_time,
        end_time=None,
        bytes=None,
        info=msgspec.json.encode(info),
        error=None,
        recovery_point_id=recovery_point_id,
    )
    return job_id


async def finish(
    tx: Tx,
    job_id: str,
    *,
    now: float,
    status: str,
    size: int | None = None,
    error: dict[str, Any] | None = None,
    details: dict[str, str] | None = None,
) -> None:
    """Finish a job once; a finished job never changes again. A failure queues the vault's
    job-failure alert (unless the vault turned them off) in the same transaction, so an alert is
    sent exactly when the failure is recorded."""
    row = await tx.backup_job(job_id)
    if row is None or row.terminal:
        return
    values: dict[str, Any] = {"status": status, "end_time": now}
    if size is not None:
        values["bytes"] = size
    if error is not None:
        values["error"] = msgspec.json.encode(error)
    if details:
        info = msgspec.json.decode(row.info)
        info["additionalDetails"] = {**info.get("additionalDetails", {}), **details}
        values["info"] = msgspec.json.encode(info)
    await tx.update_backup_job(job_id, **values)
    if status == FAILED and await alerts_enabled(tx, row.vault_key):
        # Queue time is wall time (the queue's), whatever a manual clock says.
        alert = payloads.JobFailureAlert(job=row.id)
        await payloads.enqueue(tx, alert, now=time.time(), dedupe_key=f"alert:{row.id}")
    _log_finished(row, status, now=now, size=size, error=error, details=details)


async def alerts_enabled(tx: Tx, vault_key: str) -> bool:
    """``monitoringSettings.azureMonitorAlertSettings.alertsForAllJobFailures``: Enabled unless
    the vault says Disabled (Azure's default)."""
    vault = await tx.resource(vault_key, lock=False)
    if vault is None:
        return True
    settings = decode_vault(vault.body).properties.monitoringSettings
    alerts = settings.azureMonitorAlertSettings if settings else None
    return not (alerts and (alerts.alertsForAllJobFailures or "").lower() == "disabled")


def _log_finished(
    row: BackupJobRow,
    status: str,
    *,
    now: float,
    size: int | None,
    error: dict[str, Any] | None,
    details: dict[str, str] | None,
) -> None:
    """One info line per finished job: what it was for, what it made, how long it took."""
    fields: dict[str, Any] = {
        "job": row.id, "operation": row.operation, "status": status,
        "instance": (row.instance_key or "").rsplit("/", 1)[-1] or None, "vault": row.vault_key.rsplit("/", 1)[-1],
        "duration_s": round(max(0.0, now - row.start_time), 3),
    }  # fmt: skip
    point = (details or {}).get("RecoveryPointId") or row.recovery_point_id
    if point:
        fields["recovery_point"] = point
    if size is not None:
        fields["bytes"] = size
    if details and "DeletedRecoveryPoints" in details:
        fields["deleted"] = int(details["DeletedRecoveryPoints"])
    if error is not None:
        fields["code"] = error.get("code")
    log.info(f"{row.operation} {status.lower()}", **fields)

"""Backup-job records (Azure's ``backupJobs``).

A record is written when the work is asked for (same transaction as the request or schedule tick)
and finished by whoever does the work, so ``backupJobs`` shows it InProgress meanwhile. How a record
is rendered as an ARM resource is ``resources/jobs/render.py``.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import msgspec

from dpvault.model.instances.schema import BackupInstance
from dpvault.store import Tx

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
    """Finish a job once; a finished job never changes again."""
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

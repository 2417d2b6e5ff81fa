"""How a backup-job record is rendered as an ARM resource (AzureBackupJobResource, 2023-01-01 shape)."""

from __future__ import annotations

from typing import Any

import msgspec

from dpvault.clock import from_timestamp
from dpvault.store import BackupJobRow

_TASKS = {
    "Backup": "Trigger Backup",
    "Restore": "Trigger Restore",
    "RestoreDrill": "Restore Drill",
    "ValidateForBackup": "Validate For Backup",
    "ValidateRestore": "Validate Restore",
    "ConfigureBackup": "Configure Backup",
    "Retention": "Delete Expired Recovery Points",
}


def _duration(seconds: float) -> str:
    """ISO 8601, as the spec says and the service answers: ``PT2M11.9724387S``, ``PT0.29S``
    (ticks of 100 ns, trailing zeros dropped; the 2021 examples' ``00:02:11.97`` is .NET's TimeSpan)."""
    ticks = max(0, round(seconds * 10_000_000))
    hours, ticks = divmod(ticks, 3600 * 10_000_000)
    minutes, ticks = divmod(ticks, 60 * 10_000_000)
    whole, fraction = divmod(ticks, 10_000_000)
    out = "PT" + (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
    if fraction:
        out += f"{whole}.{fraction:07d}".rstrip("0") + "S"
    elif whole or out == "PT":
        out += f"{whole}S"
    return out


def render(row: BackupJobRow, vault_id: str, now: float) -> dict[str, Any]:
    """The AzureBackupJobResource body (2023-01-01 shape)."""
    info = msgspec.json.decode(row.info)
    details = info.pop("additionalDetails", {})
    extended = info.pop("extendedInfo", {})
    end = row.end_time
    props: dict[str, Any] = {
        "activityID": row.id,
        "subscriptionId": info.pop("subscriptionId", ""),
        "vaultName": info.pop("vaultName", ""),
        "backupInstanceFriendlyName": "",
        "dataSourceId": "",
        "dataSourceName": "",
        "dataSourceType": "",
        "dataSourceLocation": "",
        "sourceResourceGroup": "",
        "sourceSubscriptionID": "",
        **info,
        "operation": row.operation,
        "operationCategory": row.category,
        "status": row.status,
        "isUserTriggered": row.user_triggered,
        "progressEnabled": False,
        "supportedActions": [],
        "startTime": from_timestamp(row.start_time),
        "duration": _duration((end if end is not None else now) - row.start_time),
        "extendedInfo": {
            **extended,
            "additionalDetails": {**details, "TaskId": row.id},
            "subTasks": [
                {"taskId": 1, "taskName": _TASKS.get(row.operation, row.operation), "taskStatus": row.status}
            ],
        },
    }
    if end is not None:
        props["endTime"] = from_timestamp(end)
    if row.bytes is not None:
        props["extendedInfo"]["dataTransferredInBytes"] = float(row.bytes)
    if row.error is not None:
        error = msgspec.json.decode(row.error)
        props["errorDetails"] = [error]
    return {
        "id": f"{vault_id}/backupJobs/{row.id}",
        "name": row.id,
        "type": "Microsoft.DataProtection/backupVaults/backupJobs",
        "properties": props,
    }

"""What each kind of queued job carries: one msgspec Struct per job kind.

The queue (``dpvault.jobs``) stores a job's kind and its encoded payload; ``enqueue`` writes both
from a payload Struct, and the worker decodes a claimed job's payload into the Struct registered
for its kind. Field names are the JSON names jobs were stored under by earlier versions, so a job
enqueued before an upgrade still runs after it. Queue mechanics (the job's id, its worker, the
attempt) are never in a payload: the worker hands them to handlers beside it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from dpvault.model.instances.schema import BackupInstance
from dpvault.store import Tx


class Payload(msgspec.Struct, kw_only=True):
    """A job's payload; ``kind`` names the job type that runs it."""

    kind: ClassVar[str]


class ProvisionVault(Payload):
    kind: ClassVar[str] = "vault.provision"
    operation: str


class PurgeVaults(Payload):
    """Delete what is stored for vaults that are gone (their resource group was deleted)."""

    kind: ClassVar[str] = "vault.purge"
    vaults: list[str]


class ConfigureInstance(Payload):
    kind: ClassVar[str] = "instance.configure"
    operation: str
    deep: bool = False
    job: str | None = None  # the ConfigureBackup job record of a deep validation


class DeleteInstance(Payload):
    kind: ClassVar[str] = "instance.delete"
    operation: str
    # The vault's soft-delete retention in days when the delete was asked for: the instance and its
    # recovery points are kept that long (SoftDeleted). None: deleted for good, as before issue 13.
    softDeleteDays: float | None = None


class ValidateForBackup(Payload):
    kind: ClassVar[str] = "instance.validate"
    operation: str
    backupInstance: BackupInstance
    job: str | None = None
    subscription: str | None = None


class SyncInstance(Payload):
    kind: ClassVar[str] = "instance.sync"
    operation: str


class Backup(Payload):
    kind: ClassVar[str] = "protection.backup"
    job: str
    instance: str
    rule: str
    tag: str | None = None
    occurrence: float | None = None  # the schedule occurrence (business time); None: adhoc


class RestoreDrill(Payload):
    kind: ClassVar[str] = "protection.drill"
    job: str
    instance: str
    rp: str


class Restore(Payload):
    kind: ClassVar[str] = "protection.restore"
    job: str
    instance: str
    rp: str
    target: dict[str, Any]  # the restoreTargetInfo as sent (secret values removed)


class ValidateRestore(Payload):
    kind: ClassVar[str] = "protection.validate_restore"
    operation: str
    job: str | None
    instance: str
    rp: str
    target: dict[str, Any]


class JobFailureAlert(Payload):
    """A backup job failed in a vault whose job-failure alerts are on: tell the webhooks."""

    kind: ClassVar[str] = "alerts.job_failed"
    job: str


class AlertDelivery(Payload):
    """One alert (a common-alert-schema body, built once so every retry sends the same) to one webhook."""

    kind: ClassVar[str] = "alerts.deliver"
    url: str
    alert: dict[str, Any]


async def enqueue(
    tx: Tx, payload: Payload, *, now: float, dedupe_key: str | None = None, max_attempts: int = 5
) -> bool:
    """Queue ``payload`` in the caller's transaction; False when ``dedupe_key`` was queued already."""
    return await tx.enqueue(
        payload.kind, msgspec.json.encode(payload), now=now, dedupe_key=dedupe_key, max_attempts=max_attempts
    )

"""Protection lifecycle actions on a backup instance (LRO; final result ``200`` with no body):

| action | from | to | scheduler | retention |
|---|---|---|---|---|
| stopProtection | ProtectionConfigured, BackupSchedulesSuspended | ProtectionStopped | off | off (points kept) |
| suspendBackups | ProtectionConfigured | BackupSchedulesSuspended | off | on |
| resumeBackups | BackupSchedulesSuspended | ProtectionConfigured | on (next occurrence) | on |
| resumeProtection | ProtectionStopped, BackupSchedulesSuspended | ProtectionConfigured | on (next occurrence) | on |
| sync | ProtectionConfigured, BackupSchedulesSuspended, ConfiguringProtectionFailed | re-validated (deep), policy re-read | as before | as before |

Anything else is a 409 ``UserErrorInvalidProtectionState`` naming the current state. Azure accepts
resumeProtection after suspendBackups too (the az CLI's ``resume-protection`` does that), so
dpvault does. In a vault linked to a resource guard, stopProtection and suspendBackups are critical
operations: their optional body's ``resourceGuardOperationRequests`` carries the guard's approval.
The final result is ``{}`` at 2023-01-01, ``{"objectType": "OperationJobExtendedInfo"}`` later.
"""

from __future__ import annotations

from typing import Any

import msgspec

from dpvault import errors
from dpvault.arm import ids
from dpvault.arm.http import Call, Reply
from dpvault.arm.schema import decode
from dpvault.model import operations, payloads
from dpvault.model.guards import rules as guard_rules
from dpvault.model.instances import rules
from dpvault.model.instances.schema import (
    BackupInstanceResource,
    GuardedActionRequest,
    ProtectionStatusDetails,
)
from dpvault.model.restores.schema import SyncBackupInstanceRequest
from dpvault.model.vaults.rules import vault_location
from dpvault.protection.service import Protection
from dpvault.resources.common import check_provider_call, fingerprint
from dpvault.resources.guardproxies.mua import Approval
from dpvault.resources.instances.lookups import require_instance
from dpvault.resources.operations import accepted, lifecycle_result
from dpvault.resources.vaults.lookups import require_vault
from dpvault.services import Services
from dpvault.store import Tx
from dpvault.types import OperationKind, OperationStatus

CONFIGURED = "ProtectionConfigured"
SUSPENDED = "BackupSchedulesSuspended"
STOPPED = "ProtectionStopped"
FAILED = "ConfiguringProtectionFailed"

# action -> (allowed current states, new state, protected-item state)
TRANSITIONS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "stopProtection": ((CONFIGURED, SUSPENDED), STOPPED, "stopped"),
    "suspendBackups": ((CONFIGURED,), SUSPENDED, "suspended"),
    "resumeBackups": ((SUSPENDED,), CONFIGURED, "active"),
    "resumeProtection": ((STOPPED, SUSPENDED), CONFIGURED, "active"),
}
# actions that are critical operations of a vault with a resource guard
CRITICAL = {"stopProtection": guard_rules.STOP_PROTECTION, "suspendBackups": guard_rules.SUSPEND_BACKUPS}
SYNC_FROM = (CONFIGURED, SUSPENDED, FAILED)


class ActionRoutes:
    def __init__(self, svc: Services, protection: Protection) -> None:
        self.svc = svc
        self.protection = protection

    def route(self, action: str) -> Any:
        async def handler(call: Call) -> Reply:
            return await self.transition(call, action)

        return handler

    async def _instance(self, tx: Tx, call: Call) -> tuple[Any, Any, operations.Scope]:
        p = call.params
        sub, rg = p["subscriptionId"], ids.check_resource_group(p["resourceGroupName"])
        vault = ids.check_resource_name(p["vaultName"], "backup vault")
        name = ids.check_resource_name(p["backupInstanceName"], "backup instance")
        vault_row = await require_vault(tx, sub, rg, vault)
        row = await require_instance(tx, vault_row, name, vault=vault, rg=rg)
        if row.active_operation:
            raise errors.conflict(
                f"Another operation is in progress on backup instance '{name}'; retry when it has ended.",
                code="AnotherOperationInProgress",
            )
        return vault_row, row, operations.Scope(sub, rg, vault, vault_location(vault_row))

    async def _instance_in(
        self, tx: Tx, call: Call, action: str, allowed: Any
    ) -> tuple[Any, BackupInstanceResource, operations.Scope]:
        """The instance (row, decoded) when its protection state allows ``action``, else 409."""
        _vault, row, scope = await self._instance(tx, call)
        resource = rules.decode_instance(row.body)
        current = resource.properties.currentProtectionState or ""
        if current not in allowed:
            raise errors.conflict(
                f"'{action}' needs the backup instance to be {' or '.join(allowed)}; it is {current}.",
                code="UserErrorInvalidProtectionState",
            )
        return row, resource, scope

    async def transition(self, call: Call, action: str) -> Reply:
        version = check_provider_call(self.svc, call, f"backupVaults/backupInstances/{action}")
        allowed, new_state, item_state = TRANSITIONS[action]
        requests = None
        if action in CRITICAL:
            body = await call.json_body(required=False)
            requests = decode(body, GuardedActionRequest).resourceGuardOperationRequests if body else None
        approval = Approval(self.svc, call)

        async def write(tx: Tx) -> tuple[str, operations.Scope]:
            row, resource, scope = await self._instance_in(tx, call, action, allowed)
            if action in CRITICAL:
                vault_row = await tx.resource(row.parent_key, lock="share")
                assert vault_row is not None
                await approval.require(tx, vault_row, CRITICAL[action], requests, f"'{action}'")
            status = CONFIGURED if new_state == CONFIGURED else STOPPED
            props = msgspec.structs.replace(
                resource.properties,
                currentProtectionState=new_state,
                protectionStatus=ProtectionStatusDetails(status=status),
                protectionErrorDetails=None,
            )
            await tx.update_resource(
                row.key, body=msgspec.json.encode(msgspec.structs.replace(resource, properties=props)),
                updated_at=self.svc.now(),
            )  # fmt: skip
            if item_state == "active":
                policy_row = await tx.resource(resource.properties.policyInfo.policyId.lower())
                if policy_row is not None:  # next occurrence, no catch-up
                    backed_up = self.protection.engine_for(resource.properties) is not None
                    await self.protection.protect(tx, row, policy_row, backed_up=backed_up)
            elif await tx.protected_item(row.key) is not None:
                await tx.update_protected_item(row.key, state=item_state, updated_at=self.svc.now())
            op = await operations.start(
                tx, now=self.svc.now(), kind=OperationKind.UPDATE, scope=scope, resource_key=row.key,
                resource_path=resource.id or "", api_version=version, request_hash=fingerprint(action),
            )  # fmt: skip
            await operations.finish(
                tx, op.id, now=self.svc.now(), status=OperationStatus.SUCCEEDED,
                result=lifecycle_result(version), op=op,
            )  # fmt: skip
            return op.id, scope

        op_id, scope = await self.svc.store.transact(write)
        self.svc.wake_scheduler()
        return accepted(call, scope, op_id, version, self.svc.settings.retry_after)

    async def sync(self, call: Call) -> Reply:
        version = check_provider_call(self.svc, call, "backupVaults/backupInstances/sync")
        body = await call.json_body(required=False)
        request = decode(body, SyncBackupInstanceRequest) if body else SyncBackupInstanceRequest()

        async def write(tx: Tx) -> tuple[str, operations.Scope]:
            row, resource, scope = await self._instance_in(tx, call, "sync", SYNC_FROM)
            op = await operations.start(
                tx, now=self.svc.now(), kind=OperationKind.UPDATE, scope=scope, resource_key=row.key,
                resource_path=resource.id or "", api_version=version, request_hash=fingerprint("sync", request.syncType),
            )  # fmt: skip
            await payloads.enqueue(tx, payloads.SyncInstance(operation=op.id), now=self.svc.real_now())
            await tx.update_resource(row.key, active_operation=op.id)
            return op.id, scope

        op_id, scope = await self.svc.store.transact(write)
        self.svc.wake_worker()
        return accepted(call, scope, op_id, version, self.svc.settings.retry_after)

"""- ``POST …/backupInstances/{bi}/findRestorableTimeRanges`` (synchronous): the times a restore can
  go back to. PostgreSQL backups are discrete points in the VaultStore, so each point is a range of
  its own (start = end = the point's time); other stores have none (continuous ranges belong to a
  datasource with an operational store, which no dpvault engine has yet).
- ``POST …/backupInstances/{bi}/validateForModifyBackup`` (202, LRO): the changed instance checked
  as a PUT would (shape, policy) and deeply validated by a job, like validateForBackup.
- ``POST …/backupInstances/{bi}/rehydrate``: a clear 400: rehydration brings ArchiveStore points
  back, and dpvault keeps only VaultStore points.
- ``GET /{resourceId}/providers/Microsoft.DataProtection/backupInstances`` (2024-04-01+): the
  instances protecting a resource, across the caller's tenant's vaults, with ids under the resource.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

import msgspec

from dpvault import errors
from dpvault.arm import ids
from dpvault.arm.http import Call, Reply, encode
from dpvault.arm.schema import decode
from dpvault.clock import from_timestamp
from dpvault.model import backup_jobs, operations, payloads
from dpvault.model.instances import rules
from dpvault.model.instances.schema import (
    FindRestorableTimeRangesRequest,
    RehydrationRequest,
    ValidateForModifyBackupRequest,
)
from dpvault.model.policies.schedule import ScheduleError, parse_datetime
from dpvault.model.vaults.rules import vault_location
from dpvault.model.versions import instance_view
from dpvault.resources.common import check_provider_call, check_provider_since, fingerprint
from dpvault.resources.instances.lookups import require_instance, resolve_policy
from dpvault.resources.operations import accepted
from dpvault.resources.vaults.lookups import require_vault
from dpvault.services import Services
from dpvault.store import ResourceRow, Tx
from dpvault.types import INSTANCE_TYPE, Kind, OperationKind

TIME_RANGES_TYPE = "Microsoft.DataProtection/backupVaults/backupInstances/findRestorableTimeRanges"


def _names(call: Call) -> tuple[str, str, str, str]:
    p = call.params
    return (
        p["subscriptionId"],
        ids.check_resource_group(p["resourceGroupName"]),
        ids.check_resource_name(p["vaultName"], "backup vault"),
        ids.check_resource_name(p["backupInstanceName"], "backup instance"),
    )


def _moment(value: str | None, target: str) -> float | None:
    """An ISO 8601 time of the request, or None for an absent or empty one (Learn's samples send "")."""
    if not value or not value.strip():
        return None
    try:
        moment = parse_datetime(value.strip())
    except ScheduleError as exc:
        raise errors.bad_request(str(exc), target=target) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


class InstanceOperationRoutes:
    def __init__(self, svc: Services) -> None:
        self.svc = svc

    async def _instance(self, tx: Tx, call: Call) -> tuple[ResourceRow, ResourceRow, operations.Scope]:
        sub, rg, vault, name = _names(call)
        vault_row = await require_vault(tx, sub, rg, vault)
        row = await require_instance(tx, vault_row, name, vault=vault, rg=rg)
        return vault_row, row, operations.Scope(sub, rg, vault, vault_location(vault_row))

    async def find_restorable_time_ranges(self, call: Call) -> Reply:
        check_provider_call(self.svc, call, "backupVaults/backupInstances/findRestorableTimeRanges")
        request = decode(await call.json_body() or b"", FindRestorableTimeRangesRequest)
        start = _moment(request.startTime, "startTime")
        end = _moment(request.endTime, "endTime")
        if start is not None and end is not None and start > end:
            raise errors.bad_request("'startTime' must not be after 'endTime'.", target="startTime")
        async with self.svc.store.read() as tx:
            _vault, row, _scope = await self._instance(tx, call)
            points = []
            if request.sourceDataStoreType == "VaultStore":
                points = await tx.recovery_points_of(
                    row.key,
                    start=None if start is None else start - 5e-7,
                    end=None if end is None else end + 5e-7,
                )
        ranges = [
            {
                "startTime": from_timestamp(p.time),
                "endTime": from_timestamp(p.time),
                "objectType": "RestorableTimeRange",
            }
            for p in reversed(points)  # oldest first
        ]
        return Reply.json(
            200,
            {
                "id": row.name,  # sic: the instance's name, as the service and its examples answer
                "name": row.name,
                "type": TIME_RANGES_TYPE,
                "properties": {
                    "objectType": "AzureBackupFindRestorableTimeRangesResponse",
                    "restorableTimeRanges": ranges,
                },
            },
        )

    async def validate_for_modify_backup(self, call: Call) -> Reply:
        version = check_provider_since(
            self.svc, call, "backupVaults/backupInstances/validateForModifyBackup", "2025-01-01"
        )
        request = decode(await call.json_body() or b"", ValidateForModifyBackupRequest)
        rules.check_shape(request.backupInstance, base="backupInstance")

        async def write(tx: Tx) -> tuple[str, operations.Scope]:
            vault_row, row, scope = await self._instance(tx, call)
            await resolve_policy(tx, request.backupInstance, vault_row, base="backupInstance")
            resource = rules.decode_instance(row.body)
            job_id = await backup_jobs.create(
                tx, now=self.svc.now(), subscription=scope.subscription, vault_key=vault_row.key,
                vault_name=vault_row.name, instance_key=row.key, instance_id=resource.id,
                instance=request.backupInstance, operation="ValidateForModifyBackup", category="Backup",
                user_triggered=True,
            )  # fmt: skip
            op = await operations.start(
                tx, now=self.svc.now(), kind=OperationKind.VALIDATE, scope=scope, resource_key=row.key,
                resource_path=resource.id or "", api_version=version,
                request_hash=fingerprint("validateForModifyBackup", request.backupInstance),
            )  # fmt: skip
            validate = payloads.ValidateForBackup(
                operation=op.id,
                backupInstance=rules.without_secret(request.backupInstance),
                job=job_id,
                subscription=scope.subscription,
            )
            await payloads.enqueue(tx, validate, now=self.svc.real_now())
            return op.id, scope

        op_id, scope = await self.svc.store.transact(write)
        self.svc.wake_worker()
        return accepted(call, scope, op_id, version, self.svc.settings.retry_after)

    async def rehydrate(self, call: Call) -> Reply:
        check_provider_call(self.svc, call, "backupVaults/backupInstances/rehydrate")
        request = decode(await call.json_body() or b"", RehydrationRequest)
        if not request.rehydrationRetentionDuration.strip():
            raise errors.bad_request(
                "The property 'rehydrationRetentionDuration' must be an ISO 8601 duration such as P10D.",
                target="rehydrationRetentionDuration",
            )
        async with self.svc.store.read() as tx:
            _vault, row, _scope = await self._instance(tx, call)
            rp = await tx.recovery_point(request.recoveryPointId.strip().lower())
        if rp is None or rp.instance_key != row.key or rp.state != "available":
            raise errors.bad_request(
                f"The recovery point '{ids.printable(request.recoveryPointId)}' does not exist for this backup instance.",
                code="UserErrorRecoveryPointNotFound",
                target="recoveryPointId",
            )
        raise errors.bad_request(
            f"The recovery point '{rp.id}' is in the {rp.data_store}, not the ArchiveStore: it needs no "
            "rehydration (dpvault keeps recovery points in the vault store only; restore it directly).",
            code="UserErrorRecoveryPointNotInArchiveStore",
            target="recoveryPointId",
        )

    async def list_for_resource(self, call: Call) -> Reply:
        """The backup instances whose datasource is the resource in the path (any vault of the
        caller's tenant; an instance of another tenant is never shown)."""
        version = check_provider_since(self.svc, call, "backupInstances", "2024-04-01")
        assert call.principal is not None
        resource_id = "/" + call.path.strip("/").rsplit("/providers/", 1)[0].strip("/")
        wanted = ids.key(resource_id)
        probe = wanted.encode()
        found: list[bytes] = []
        async with self.svc.store.read() as tx:
            subscriptions = [r["id"] for r in await tx.subscriptions_of(call.principal.tenant)]
            for sub in subscriptions:
                for row in await tx.resources_by(Kind.INSTANCE.value, subscription=sub.lower()):
                    if probe not in row.body.lower():  # cheap filter before decoding
                        continue
                    body: dict[str, Any] = msgspec.json.decode(row.body)
                    source = ((body.get("properties") or {}).get("dataSourceInfo") or {}).get(
                        "resourceID", ""
                    )
                    if ids.key(source.rstrip("/")) != wanted:
                        continue
                    body = instance_view(body, version)
                    body["id"] = (
                        f"{resource_id}/providers/Microsoft.DataProtection/backupInstances/{row.name}"
                    )
                    body["type"] = INSTANCE_TYPE
                    found.append(encode(body))
        return Reply.json(200, b'{"value":[' + b",".join(found) + b"]}")

"""Long-running operations: their records, the URLs clients poll, and the status/result routes.

An operation is written in the same transaction as the resource change and the job that will
finish it. Clients poll ``Azure-AsyncOperation`` (the status resource) and make their final GET on
``Location`` (the result). Both keep answering after a restart (ARM-35).
"""

from __future__ import annotations

import base64
import re
import uuid
from dataclasses import dataclass
from typing import Any

import msgspec

from dpvault import errors
from dpvault.arm import ids
from dpvault.arm.http import Call, Reply
from dpvault.clock import from_timestamp
from dpvault.resources.common import check_provider_call
from dpvault.resources.groups import group_key
from dpvault.resources.vaults.rules import vault_key
from dpvault.services import Services
from dpvault.store import OperationRow, Tx
from dpvault.types import OperationKind, OperationStatus

_OPERATION_ID = re.compile(r"^[A-Za-z0-9_=+/-]{1,200}$")


def new_operation_id() -> str:
    """Like the real service: base64 of "{guid};{guid}" (URL-safe alphabet, so it is one path segment)."""
    raw = f"{uuid.uuid4()};{uuid.uuid4()}".encode()
    return base64.urlsafe_b64encode(raw).decode()


@dataclass(frozen=True, slots=True)
class Scope:
    """Where an operation's resource lives, as the caller spelled it."""

    subscription: str
    resource_group: str
    vault: str
    location: str

    @property
    def rg_key(self) -> str:
        return group_key(self.subscription, self.resource_group)

    @property
    def vault_key(self) -> str:
        return vault_key(self.subscription, self.resource_group, self.vault)


async def start(
    tx: Tx,
    svc: Services,
    *,
    kind: OperationKind,
    scope: Scope,
    resource_key: str,
    resource_path: str,
    api_version: str,
    request_hash: str,
    job_kind: str | None,
    job_payload: dict[str, Any] | None = None,
) -> OperationRow:
    """Record an InProgress operation and enqueue the job that finishes it, in the caller's transaction."""
    now = svc.now()
    op_id = new_operation_id()
    values = {
        "id": op_id,
        "kind": kind.value,
        "status": OperationStatus.IN_PROGRESS.value,
        "subscription": scope.subscription.lower(),
        "rg_key": scope.rg_key,
        "vault_key": scope.vault_key,
        "resource_key": resource_key,
        "resource_path": resource_path,
        "location": scope.location,
        "api_version": api_version,
        "request_hash": request_hash,
        "start_time": now,
        "end_time": None,
        "error": None,
        "result": None,
    }
    await tx.insert_operation(**values)
    if job_kind is not None:
        payload = {"operation": op_id, **(job_payload or {})}
        await tx.enqueue(job_kind, msgspec.json.encode(payload), now=svc.real_now())
    return OperationRow(**values)


async def finish(
    tx: Tx,
    op_id: str,
    *,
    now: float,
    status: OperationStatus,
    error: dict[str, Any] | None = None,
    result: Any = None,
    op: OperationRow | None = None,
) -> None:
    """Move an operation to a terminal state; a terminal operation never changes again (ARM-32).
    ``op``: the row, when the caller read it in this transaction already."""
    if op is None or op.id != op_id:
        op = await tx.operation(op_id)
    if op is None or op.terminal:
        return
    await tx.update_operation(
        op_id,
        status=status.value,
        end_time=now,
        error=msgspec.json.encode(error) if error is not None else None,
        result=msgspec.json.encode(result) if result is not None else None,
    )


# -- URLs handed to clients ----------------------------------------------------------------


def _query(api_version: str) -> str:
    return f"?api-version={api_version}"


def vault_status_url(call: Call, scope: Scope, op_id: str, api_version: str) -> str:
    path = ids.url_path(
        "subscriptions", scope.subscription, "resourceGroups", scope.resource_group,
        "providers", "Microsoft.DataProtection", "backupVaults", scope.vault, "operationStatus", op_id,
    )  # fmt: skip
    return call.base_url + path + _query(api_version)


def instance_result_url(call: Call, scope: Scope, instance: str, op_id: str, api_version: str) -> str:
    path = ids.url_path(
        "subscriptions", scope.subscription, "resourceGroups", scope.resource_group,
        "providers", "Microsoft.DataProtection", "backupVaults", scope.vault,
        "backupInstances", instance, "operationResults", op_id,
    )  # fmt: skip
    return call.base_url + path + _query(api_version)


def location_result_url(call: Call, scope: Scope, op_id: str, api_version: str) -> str:
    path = ids.url_path(
        "subscriptions", scope.subscription, "providers", "Microsoft.DataProtection",
        "locations", scope.location, "operationResults", op_id,
    )  # fmt: skip
    return call.base_url + path + _query(api_version)


# -- status and result routes ----------------------------------------------------------------


def status_body(op: OperationRow, status_path: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": status_path,
        "name": op.id,
        "status": op.status,
        "startTime": from_timestamp(op.start_time),
    }
    if op.end_time is not None:
        body["endTime"] = from_timestamp(op.end_time)
    if op.error is not None:
        error = msgspec.json.decode(op.error)
        error.pop("httpStatus", None)
        body["error"] = error
    if op.status == OperationStatus.SUCCEEDED and op.result is not None:
        result = msgspec.json.decode(op.result)
        if isinstance(result, dict) and result.get("objectType") == "OperationJobExtendedInfo":
            body["properties"] = result
    return body


class OperationRoutes:
    def __init__(self, svc: Services) -> None:
        self.svc = svc

    async def _load(self, call: Call) -> OperationRow:
        check_provider_call(self.svc, call, "operationStatus")
        op_id = call.params["operationId"]
        if not _OPERATION_ID.match(op_id):
            raise errors.operation_not_found(ids.printable(op_id))
        async with self.svc.store.read() as tx:
            op = await tx.operation(op_id)
        if op is None or op.subscription != call.params["subscriptionId"].lower():
            raise errors.operation_not_found(op_id)
        p = call.params
        if "resourceGroupName" in p:
            if op.rg_key != group_key(p["subscriptionId"], p["resourceGroupName"]):
                raise errors.operation_not_found(op_id)
        if "vaultName" in p:
            if op.vault_key != vault_key(p["subscriptionId"], p["resourceGroupName"], p["vaultName"]):
                raise errors.operation_not_found(op_id)
        if "backupInstanceName" in p and not op.resource_key.endswith(
            "/backupinstances/" + p["backupInstanceName"].lower()
        ):
            raise errors.operation_not_found(op_id)
        return op

    async def status(self, call: Call) -> Reply:
        op = await self._load(call)
        # Retry-After while running: without it the Python SDK waits its 30 s default between polls.
        headers = {} if op.terminal else {"Retry-After": str(self.svc.settings.retry_after)}
        return Reply.json(200, status_body(op, call.path), headers)

    async def result(self, call: Call) -> Reply:
        """202 while running (with Location back here); then what the synchronous call would have returned."""
        op = await self._load(call)
        if not op.terminal:
            headers = {
                "Location": call.base_url
                + ids.url_path(*call.path.strip("/").split("/"))
                + _query(op.api_version),
                "Retry-After": str(self.svc.settings.retry_after),
            }
            return Reply.empty(202, headers)
        if op.status != OperationStatus.SUCCEEDED:
            error = (
                msgspec.json.decode(op.error)
                if op.error
                else {"code": "OperationFailed", "message": "Failed."}
            )
            status = int(error.pop("httpStatus", 400))
            raise errors.ArmError(
                status,
                error.get("code", "OperationFailed"),
                error.get("message", ""),
                target=error.get("target"),
                details=error.get("details"),
            )
        if op.result is not None:
            return Reply.json(200, op.result)
        if op.kind == OperationKind.DELETE:
            return Reply.empty(204)
        async with self.svc.store.read() as tx:
            row = await tx.resource(op.resource_key)
        if row is None:
            return Reply.empty(204)
        return Reply.json(200, row.body)


def accepted(call: Call, scope: Scope, op_id: str, api_version: str, retry_after: int) -> Reply:
    """202 for a POST action: Azure-AsyncOperation (vault scope) and Location (location scope), no body."""
    return Reply.empty(
        202,
        {
            "Azure-AsyncOperation": vault_status_url(call, scope, op_id, api_version),
            "Location": location_result_url(call, scope, op_id, api_version),
            "Retry-After": str(retry_after),
        },
    )

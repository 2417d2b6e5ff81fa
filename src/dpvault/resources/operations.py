"""The operation routes and the URLs clients poll: ``Azure-AsyncOperation`` (the status resource) and
``Location`` (the result). Both keep answering after a restart (ARM-35). The records themselves are
``dpvault.model.operations``.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from dpvault import errors
from dpvault.arm import ids
from dpvault.arm.http import Call, Reply
from dpvault.clock import from_timestamp
from dpvault.model import versions
from dpvault.model.keys import group_key, vault_key
from dpvault.model.operations import Scope, arm_error, stored_error
from dpvault.resources.common import check_provider_call
from dpvault.services import Services
from dpvault.store import OperationRow
from dpvault.types import Kind, OperationKind, OperationStatus

_OPERATION_ID = re.compile(r"^[A-Za-z0-9_=+/-]{1,200}$")


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
    error = stored_error(op)
    if error is not None:
        body["error"] = arm_error(error)
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
        version = call.api_version or ""
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
            failure = stored_error(op) or errors.ArmError(400, "OperationFailed", "Failed.")
            return Reply.json(failure.status, {"error": arm_error(failure)})
        if op.result is not None:
            return Reply.json(200, op.result)
        if op.kind == OperationKind.DELETE:
            return Reply.empty(204)
        async with self.svc.store.read() as tx:
            row = await tx.resource(op.resource_key)
        if row is None:
            return Reply.empty(204)
        if row.kind == Kind.VAULT.value:
            return Reply.json(200, versions.vault_body(row.body, version))
        return Reply.json(200, versions.instance_body(row.body, version))


def lifecycle_result(api_version: str) -> dict[str, Any]:
    """What a finished lifecycle action (stop, suspend, resume, sync, undelete) leaves as its result:
    ``{}`` at 2023-01-01 (as before issue 13), the spec's OperationJobExtendedInfo from 2023-05-01 on
    (what the real service answers; no job is recorded for these)."""
    return {"objectType": "OperationJobExtendedInfo"} if versions.since(api_version, "2023-05-01") else {}


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

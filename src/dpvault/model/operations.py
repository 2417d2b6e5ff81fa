"""Long-running operations as records: written in the same transaction as the resource change (and
the job that will finish them), finished exactly once.

What the status and result URLs answer is in ``resources/operations.py``; this module only keeps
the record. A failed operation keeps its error as the :class:`~dpvault.errors.ArmError` its result
URL answers with (status and CloudError body).
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from typing import Any

import msgspec

from dpvault.errors import USER_FACING_ERROR, ArmError
from dpvault.model.keys import group_key, vault_key
from dpvault.store import OperationRow, Tx
from dpvault.types import OperationKind, OperationStatus


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
    *,
    now: float,
    kind: OperationKind,
    scope: Scope,
    resource_key: str,
    resource_path: str,
    api_version: str,
    request_hash: str,
) -> OperationRow:
    """Record an InProgress operation in the caller's transaction (the caller enqueues the job that
    finishes it, in the same transaction)."""
    values = {
        "id": new_operation_id(),
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
    return OperationRow(**values)


async def finish(
    tx: Tx,
    op_id: str,
    *,
    now: float,
    status: OperationStatus,
    error: ArmError | None = None,
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
        error=_encode_error(error) if error is not None else None,
        result=msgspec.json.encode(result) if result is not None else None,
    )


def superseded(message: str) -> ArmError:
    """The operation lost to a newer one on the same resource."""
    return ArmError(400, "OperationSuperseded", message)


# The stored shape: the CloudError's ``error`` object plus the HTTP status (``httpStatus``; 400 when
# absent, as records of earlier versions have it). Private to this module.


def _encode_error(error: ArmError) -> bytes:
    body = error.body()["error"]
    body["httpStatus"] = error.status
    return msgspec.json.encode(body)


def stored_error(op: OperationRow) -> ArmError | None:
    """The error a failed operation ended with (None unless it failed). Records written before
    issue 13 kept a UserFacingError in ``details``; it is moved to ``additionalInfo`` here."""
    if op.error is None:
        return None
    raw = msgspec.json.decode(op.error)
    details, info = [], list(raw.get("additionalInfo") or [])
    for item in raw.get("details") or []:
        if isinstance(item, dict) and item.keys() - _ERROR_KEYS:
            info.append({"type": USER_FACING_ERROR, "info": item})
        else:
            details.append(item)
    return ArmError(
        int(raw.get("httpStatus", 400)),
        raw.get("code", "OperationFailed"),
        raw.get("message", ""),
        target=raw.get("target"),
        details=details,
        additional_info=info,
    )


# What ARM's Error object may hold (common-types ErrorDetail; additionalProperties are not allowed).
_ERROR_KEYS = frozenset({"code", "message", "target", "details", "additionalInfo"})


def arm_error(error: ArmError) -> dict[str, Any]:
    """``error`` as ARM's Error object in an operation-status body: code, message, target (when
    known), details and additionalInfo (always lists), nothing else."""
    out: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.target is not None:
        out["target"] = error.target
    out["details"] = list(error.details or [])
    out["additionalInfo"] = list(error.additional_info or [])
    return out

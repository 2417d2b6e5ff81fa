"""Plain row types handed out by the store, so nothing outside ``store`` touches SQLAlchemy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self


class _Row:
    """``from_mapping``: a row type from a result mapping with (at least) its columns."""

    __slots__ = ()

    @classmethod
    def from_mapping(cls, m: Any) -> Self:
        return cls(**{f: m[f] for f in cls.__slots__})  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class ResourceRow(_Row):
    pk: int
    key: str
    kind: str
    subscription: str
    rg_key: str
    parent_key: str
    name: str
    body: bytes
    state: str
    active_operation: str | None
    revision: int
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class OperationRow(_Row):
    id: str
    kind: str
    status: str
    subscription: str
    rg_key: str
    vault_key: str
    resource_key: str
    resource_path: str
    location: str
    api_version: str
    request_hash: str
    start_time: float
    end_time: float | None
    error: bytes | None
    result: bytes | None

    @property
    def terminal(self) -> bool:
        return self.status in ("Succeeded", "Failed", "Canceled")


@dataclass(frozen=True, slots=True)
class JobRow(_Row):
    id: int
    kind: str
    payload: bytes
    state: str
    run_at: float
    attempts: int
    max_attempts: int
    lease_owner: str | None
    lease_expires_at: float | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class ProtectedItemRow(_Row):
    instance_key: str
    vault_key: str
    policy_key: str
    state: str
    next_due_at: float | None
    last_occurrence: float | None
    updated_at: float


@dataclass(frozen=True, slots=True)
class RecoveryPointRow(_Row):
    id: str
    instance_key: str
    vault_key: str
    time: float
    tag: str
    rule_name: str
    policy_name: str
    policy_version: str
    data_store: str
    object_key: str
    size: int
    sha256: str
    expiry: float | None
    details: bytes
    state: str
    created_at: float


@dataclass(frozen=True, slots=True)
class BackupJobRow(_Row):
    pk: int
    id: str
    vault_key: str
    instance_key: str | None
    operation: str
    category: str
    status: str
    user_triggered: bool
    start_time: float
    end_time: float | None
    bytes: int | None
    info: bytes
    error: bytes | None
    recovery_point_id: str | None

    @property
    def terminal(self) -> bool:
        return self.status not in ("InProgress", "Started")

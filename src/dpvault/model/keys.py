"""The keys rows are stored under: lower-cased ARM ids, so names compare case-insensitively while
``name`` and ``body`` keep the casing last sent."""

from __future__ import annotations

from dpvault.arm import ids
from dpvault.types import Kind


def group_key(sub: str, rg: str) -> str:
    return ids.key(ids.resource_group_id(sub, rg))


def vault_key(sub: str, rg: str, vault: str) -> str:
    return ids.key(ids.vault_id(sub, rg, vault))


def policy_key(sub: str, rg: str, vault: str, name: str) -> str:
    return ids.key(ids.child_id(sub, rg, vault, Kind.POLICY.value, name))


def instance_key(vault_key: str, name: str) -> str:
    return f"{vault_key}/backupinstances/{name.lower()}"

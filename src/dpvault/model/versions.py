"""What each api-version shows: stored bodies are kept in one shape (2023-01-01, plus the request
properties newer versions added, when a client sent them); a response is that body seen through
the version the request asked for.

- At 2023-01-01 a body answers exactly as before issue 13: properties of later versions (sent by a
  newer client) are removed, nothing is added. The common case (no such property) costs a few
  substring searches and returns the stored bytes untouched.
- At a later version the read-only fields it introduced are added (a vault's ``secureScore``,
  ``bcdrSecurityLevel``, ``replicatedRegions``; a recovery point's ``recoveryPointState``) and the
  properties of versions after it are removed.

The table of what came when is the colleague's research (notes §5.3), from the spec and SDK diffs.
"""

from __future__ import annotations

from typing import Any

import msgspec

BASE = "2023-01-01"


def since(version: str, first: str) -> bool:
    """True when ``version`` (a date, maybe ``-preview``) is ``first`` or later."""
    return version[:10] >= first


# path of a property -> the first version that has it (request properties; stored when sent)
_VAULT_FIELDS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("properties", "featureSettings", "crossRegionRestoreSettings"), "2023-05-01"),
    (("identity", "userAssignedIdentities"), "2023-05-01"),
    (("properties", "replicatedRegions"), "2023-11-01"),
    (("properties", "securitySettings", "encryptionSettings"), "2024-03-01"),
    (("properties", "costManagementSettings"), "2026-06-01"),
)
_VAULT_MARKERS = tuple(f'"{path[-1]}"'.encode() for path, _ in _VAULT_FIELDS)

_INSTANCE_FIELDS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("properties", "identityDetails"), "2023-05-01"),
    (("properties", "dataSourceInfo", "resourceProperties"), "2023-05-01"),
    (("properties", "dataSourceSetInfo", "resourceProperties"), "2023-05-01"),
)
# datasource parameter types (policyInfo.policyParameters.backupDatasourceParametersList[].objectType)
# and Kubernetes parameter fields, by the version that introduced them
_PARAMETER_TYPES = {
    "AdlsBlobBackupDatasourceParameters": "2025-02-01",
    "BlobBackupDatasourceParametersForAutoProtection": "2026-03-01",
    "AdlsBlobBackupDatasourceParametersForAutoProtection": "2026-03-01",
    "GenericBackupDatasourceParameters": "2026-06-01",
    "PostgreSqlFlexibleServerBackupDatasourceParameters": "2026-07-01",
}
_PARAMETER_FIELDS = {"backupHookReferences": "2023-05-01", "includedVolumeTypes": "2025-07-01"}
_INSTANCE_MARKERS = (
    tuple(f'"{path[-1]}"'.encode() for path, _ in _INSTANCE_FIELDS)
    + tuple(f'"{name}"'.encode() for name in _PARAMETER_TYPES)
    + tuple(f'"{name}"'.encode() for name in _PARAMETER_FIELDS)
)


def _drop(body: dict[str, Any], path: tuple[str, ...]) -> None:
    node: Any = body
    for part in path[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return
    if isinstance(node, dict):
        node.pop(path[-1], None)


def _newer_than(version: str, fields: tuple[tuple[tuple[str, ...], str], ...], body: dict[str, Any]) -> None:
    for path, first in fields:
        if not since(version, first):
            _drop(body, path)


# -- vaults ----------------------------------------------------------------------------------


def secure_score(props: dict[str, Any], guarded: bool) -> str:
    """dpvault's reading of Azure's vault security level (Learn, "security levels"): soft delete
    always on with a locked immutability is Maximum; always-on soft delete, or soft delete with
    immutability or MUA, Adequate; any one protection Minimum; none None."""
    security = props.get("securitySettings") or {}
    soft = (security.get("softDeleteSettings") or {}).get("state") or "Off"
    immutability = (security.get("immutabilitySettings") or {}).get("state") or "Disabled"
    if soft == "AlwaysOn" and immutability == "Locked":
        return "Maximum"
    if soft == "AlwaysOn" or (soft == "On" and (immutability != "Disabled" or guarded)):
        return "Adequate"
    if soft == "On" or immutability != "Disabled" or guarded:
        return "Minimum"
    return "None"


_BCDR = {"Maximum": "Excellent", "Adequate": "Good", "Minimum": "Fair", "None": "Poor"}


def vault_view(vault: dict[str, Any], version: str) -> dict[str, Any]:
    """A decoded vault body (changed in place) as ``version`` shows it."""
    _newer_than(version, _VAULT_FIELDS, vault)
    props = vault.get("properties")
    if not isinstance(props, dict) or not since(version, "2023-05-01"):
        return vault
    score = secure_score(props, bool(props.get("isVaultProtectedByResourceGuard")))
    props["secureScore"] = score
    if since(version, "2023-11-01"):
        props.setdefault("replicatedRegions", [])
    if since(version, "2024-03-01"):
        props["bcdrSecurityLevel"] = _BCDR[score]
    if since(version, "2024-04-01"):
        props["resourceGuardOperationRequests"] = []
    return vault


def vault_body(body: bytes, version: str) -> bytes:
    """A stored vault body as ``version`` answers it."""
    if not since(version, "2023-05-01") and not any(m in body for m in _VAULT_MARKERS):
        return body
    return msgspec.json.encode(vault_view(msgspec.json.decode(body), version))


# -- backup instances -------------------------------------------------------------------------


def instance_view(instance: dict[str, Any], version: str) -> dict[str, Any]:
    """A decoded instance body (changed in place) as ``version`` shows it."""
    _newer_than(version, _INSTANCE_FIELDS, instance)
    params = ((instance.get("properties") or {}).get("policyInfo") or {}).get("policyParameters") or {}
    listed = params.get("backupDatasourceParametersList")
    if isinstance(listed, list):
        kept = []
        for item in listed:
            first = _PARAMETER_TYPES.get(item.get("objectType", "")) if isinstance(item, dict) else None
            if first is not None and not since(version, first):
                continue
            if isinstance(item, dict):
                for name, added in _PARAMETER_FIELDS.items():
                    if not since(version, added):
                        item.pop(name, None)
            kept.append(item)
        params["backupDatasourceParametersList"] = kept
    return instance


def instance_body(body: bytes, version: str) -> bytes:
    """A stored instance body as ``version`` answers it (unchanged unless it holds newer properties
    that ``version`` does not know)."""
    if since(version, "2026-07-01") or not any(m in body for m in _INSTANCE_MARKERS):
        return body
    return msgspec.json.encode(instance_view(msgspec.json.decode(body), version))


# -- recovery points --------------------------------------------------------------------------


def recovery_point_view(point: dict[str, Any], version: str) -> dict[str, Any]:
    """2023-11-01 added ``recoveryPointState`` (every dpvault point is whole: Completed)."""
    if since(version, "2023-11-01"):
        point["properties"]["recoveryPointState"] = "Completed"
    return point

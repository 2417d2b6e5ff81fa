"""Immutable vaults (``securitySettings.immutabilitySettings.state``: Disabled | Unlocked | Locked).

In an immutable vault (Unlocked or Locked) no recovery point is deleted before its expiry, by any
path: an instance delete (soft delete keeps points, so it is allowed, but the purge waits for the
last expiry), a resource-group delete, a policy change that would shorten retention. ``Locked`` is
irreversible. Azure's codes for these refusals are not published; these are dpvault's.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from dpvault import errors
from dpvault.model.policies.schedule import parse_duration
from dpvault.model.policies.schema import AzureRetentionRule, BackupPolicy
from dpvault.store import RecoveryPointRow, ResourceRow

_PROBE = datetime(2001, 1, 1, tzinfo=UTC)


def state_of(vault_body: bytes | dict[str, Any]) -> str:
    """A vault's immutability state (from its stored body)."""
    body = msgspec.json.decode(vault_body) if isinstance(vault_body, bytes) else vault_body
    security = (body.get("properties") or {}).get("securitySettings") or {}
    return str((security.get("immutabilitySettings") or {}).get("state") or "Disabled")


def is_immutable(vault: ResourceRow | None) -> bool:
    return vault is not None and state_of(vault.body) in ("Unlocked", "Locked")


def unexpired(points: Sequence[RecoveryPointRow], now: float) -> list[RecoveryPointRow]:
    """The points that may not be deleted yet (no expiry: kept for ever)."""
    return [rp for rp in points if rp.expiry is None or rp.expiry > now]


def keeps_until(points: Sequence[RecoveryPointRow]) -> float | None:
    """When the last of ``points`` expires (None: one never does)."""
    if any(rp.expiry is None for rp in points):
        return None
    return max((rp.expiry or 0.0 for rp in points), default=0.0)


def deletion_refused(what: str, points: Sequence[RecoveryPointRow]) -> errors.ArmError:
    until = keeps_until(points)
    when = "never expire" if until is None else f"expire by {datetime.fromtimestamp(until, UTC).isoformat()}"
    return errors.conflict(
        f"{what} cannot be deleted: its vault is immutable and {len(points)} of its recovery points have not "
        f"expired (they {when}).",
        code="UserErrorImmutableVaultRecoveryPointsNotExpired",
    )


def check_transition(old: str | None, new: str | None, target: str) -> None:
    """Locked is irreversible (Azure: "once locked, immutability cannot be disabled")."""
    if (old or "Disabled") == "Locked" and (new or "Disabled") != "Locked":
        raise errors.bad_request(
            f"Immutability is Locked for this vault and cannot be changed to {new or 'Disabled'}: Locked is irreversible.",
            code="UserErrorImmutabilityLocked",
            target=target,
        )


def _seconds(duration: str) -> float:
    return ((_PROBE + parse_duration(duration)) - _PROBE).total_seconds()


def retention_of(policy: BackupPolicy) -> dict[tuple[str, str], float]:
    """(retention rule, data store) -> how long it keeps points, in seconds."""
    out: dict[tuple[str, str], float] = {}
    for rule in policy.policyRules:
        if isinstance(rule, AzureRetentionRule):
            for lifecycle in rule.lifecycles:
                out[(rule.name.lower(), lifecycle.sourceDataStore.dataStoreType)] = _seconds(
                    lifecycle.deleteAfter.duration
                )
    return out


def check_retention_change(before: BackupPolicy, after: BackupPolicy) -> None:
    """A policy in use in an immutable vault may keep points longer, never shorter (Azure refuses
    reducing the retention of such a policy); a retention rule may not go either."""
    new = retention_of(after)
    for (rule, store), kept in retention_of(before).items():
        if (rule, store) not in new or new[(rule, store)] < kept:
            raise errors.bad_request(
                f"The retention of '{rule}' ({store}) cannot be shortened or removed: the policy is in use in an "
                "immutable vault, whose recovery points may not expire sooner.",
                code="UserErrorImmutableVaultRetentionReduction",
                target="properties.policyRules",
            )


def max_retention(policy: BackupPolicy) -> float | None:
    """The longest a point of ``policy`` can be kept (seconds), for object locks; None if no rule."""
    found = list(retention_of(policy).values())
    return max(found) if found else None

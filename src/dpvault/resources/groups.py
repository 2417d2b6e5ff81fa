"""Resource groups: the minimal Microsoft.Resources surface the provider's resources live in.

With ``--auto-create-resource-groups`` (the default) a write into a missing group creates it, so
clients that never call Microsoft.Resources still work; reads of a missing group are 404
``ResourceGroupNotFound``, as in Azure.
"""

from __future__ import annotations

from typing import Any

import msgspec
import structlog

from dpvault import errors
from dpvault.arm import apiversions, ids
from dpvault.arm.http import Call, Reply
from dpvault.arm.schema import decode
from dpvault.model import immutability, payloads
from dpvault.model.keys import group_key
from dpvault.model.schema import Base
from dpvault.resources.common import check_tags
from dpvault.services import Services
from dpvault.store import ResourceRow, Tx
from dpvault.types import Kind
from dpvault.vault.points import RecoveryPoints

log = structlog.get_logger("dpvault.groups")

# The purge job keeps trying for about an hour (the worker's backoff tops out at 30 s): a store that
# refuses deletes is usually fixed by its operator, not in seconds.
PURGE_ATTEMPTS = 120


class ResourceGroupInput(Base):
    location: str
    tags: dict[str, str] | None = None
    managedBy: str | None = None  # noqa: N815 - the JSON name


def _body(sub: str, name: str, location: str, tags: dict[str, str] | None, managed_by: str | None) -> bytes:
    body: dict[str, Any] = {
        "id": ids.resource_group_id(sub, name),
        "name": name,
        "type": "Microsoft.Resources/resourceGroups",
        "location": location,
    }
    if tags is not None:
        body["tags"] = tags
    if managed_by:
        body["managedBy"] = managed_by
    body["properties"] = {"provisioningState": "Succeeded"}
    return msgspec.json.encode(body)


async def require(tx: Tx, sub: str, rg: str) -> ResourceRow:
    row = await tx.resource(group_key(sub, rg))
    if row is None:
        raise errors.resource_group_not_found(rg)
    return row


async def ensure(tx: Tx, svc: Services, sub: str, rg: str, location: str) -> ResourceRow:
    """The group, created on first use when the server allows it."""
    key = group_key(sub, rg)
    row = await tx.resource(key)
    if row is not None:
        return row
    if not svc.settings.auto_create_resource_groups:
        raise errors.resource_group_not_found(rg)
    now = svc.now()
    values = {
        "key": key,
        "kind": Kind.RESOURCE_GROUP.value,
        "subscription": sub.lower(),
        "rg_key": key,
        "parent_key": f"/subscriptions/{sub.lower()}",
        "name": rg,
        "body": _body(sub, rg, location, None, None),
        "state": "Succeeded",
        "active_operation": None,
        "revision": 1,
        "created_at": now,
        "updated_at": now,
    }
    await tx.insert_resource(**values)
    return ResourceRow(pk=0, **values)


class ResourceGroupRoutes:
    def __init__(self, svc: Services, points: RecoveryPoints) -> None:
        self.svc = svc
        self.points = points

    def _check(self, call: Call) -> tuple[str, str]:
        apiversions.check_resources(call.api_version)
        sub = ids.check_subscription(call.params["subscriptionId"])
        rg = call.params.get("resourceGroupName")
        if rg is not None:
            ids.check_resource_group(rg)
        return sub, rg or ""

    async def put(self, call: Call) -> Reply:
        sub, rg = self._check(call)
        body = decode(await call.json_body() or b"", ResourceGroupInput)
        check_tags(body.tags)
        ids.check_location(body.location, "Microsoft.Resources/resourceGroups")
        location = body.location.replace(" ", "").lower()
        key = group_key(sub, rg)

        async def write(tx: Tx) -> tuple[int, bytes]:
            row = await tx.resource(key)
            now = self.svc.now()
            if row is not None:
                existing = msgspec.json.decode(row.body)
                if existing["location"].replace(" ", "").lower() != location:
                    raise errors.ArmError(
                        409,
                        "InvalidResourceGroupLocation",
                        f"Invalid resource group location '{body.location}'. The Resource group already exists "
                        f"in location '{existing['location']}'.",
                    )
                new = _body(sub, rg, existing["location"], body.tags, body.managedBy)
                await tx.update_resource(key, name=rg, body=new, updated_at=now)
                return 200, new
            new = _body(sub, rg, body.location, body.tags, body.managedBy)
            await tx.insert_resource(
                key=key, kind=Kind.RESOURCE_GROUP.value, subscription=sub.lower(), rg_key=key,
                parent_key=f"/subscriptions/{sub.lower()}", name=rg, body=new, state="Succeeded",
                active_operation=None, revision=1, created_at=now, updated_at=now,
            )  # fmt: skip
            return 201, new

        status, new = await self.svc.store.transact(write)
        return Reply.json(status, new)

    async def get(self, call: Call) -> Reply:
        sub, rg = self._check(call)
        async with self.svc.store.read() as tx:
            row = await require(tx, sub, rg)
        if call.method == "HEAD":
            return Reply.empty(204)
        return Reply.json(200, row.body)

    async def delete(self, call: Call) -> Reply:
        """Deletes the group and everything in it, as ARM does; refused while an operation runs in it."""
        sub, rg = self._check(call)
        key = group_key(sub, rg)

        async def write(tx: Tx) -> tuple[bool, list[str]]:
            row = await tx.resource(key)
            if row is None:
                return False, []
            busy = await tx.busy_resources(rg_key=key)
            if busy:
                raise errors.conflict(
                    f"Resource group '{rg}' cannot be deleted while operations run on: {', '.join(busy[:5])}.",
                    code="ResourceGroupDeletionBlocked",
                )
            vaults = [v.key for v in await tx.resources_by(Kind.VAULT.value, rg_key=key)]
            if vaults and await tx.restores_in_progress(vault_keys=vaults):
                raise errors.conflict(
                    f"Resource group '{rg}' cannot be deleted while a restore reads one of its recovery "
                    "points; retry when the restore jobs have ended.",
                    code="ResourceGroupDeletionBlocked",
                )
            points = await tx.recovery_points_in_vaults(vaults)
            for vault_row in await tx.resources_by(Kind.VAULT.value, rg_key=key):
                kept = immutability.unexpired(
                    [rp for rp in points if rp.vault_key == vault_row.key], self.svc.now()
                )
                if kept and immutability.is_immutable(vault_row):
                    raise immutability.deletion_refused(
                        f"Resource group '{rg}' (its backup vault '{vault_row.name}')", kept
                    )
            await self.points.retire(tx, points)
            await tx.forget_vaults(vaults)
            await tx.delete_resources(rg_key=key)
            if vaults:  # backup data goes with the group: a durable job sees to it, whatever happens next
                purge = payloads.PurgeVaults(vaults=vaults)
                await payloads.enqueue(tx, purge, now=self.svc.real_now(), max_attempts=PURGE_ATTEMPTS)
            # soft-deleted instances and vaults of the group go with it (their rows just did)
            await tx.delete_soft_deletions_of_vaults_under(key + "/")
            return True, vaults

        existed, vaults = await self.svc.store.transact(write)
        if vaults:
            # Objects, then rows, right away when the store lets us; if it does not, or this process
            # dies, the job finishes it (and the sweep, should the job run out of attempts).
            try:
                await self.points.delete_vaults(vaults)
            except Exception as exc:
                log.warning(
                    "backup data of a deleted resource group left to its job", error=type(exc).__name__
                )
            self.svc.wake_worker()
        return Reply.empty(200 if existed else 204)

    async def list(self, call: Call) -> Reply:
        sub, _ = self._check(call)
        async with self.svc.store.read() as tx:
            rows = await tx.resources_by(Kind.RESOURCE_GROUP.value, subscription=sub.lower())
        return Reply.json(200, b'{"value":[' + b",".join(r.body for r in rows) + b"]}")

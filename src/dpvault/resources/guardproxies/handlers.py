"""``…/backupVaults/{v}/backupResourceGuardProxies[/{name}]`` (synchronous PUT/GET/DELETE, list) and
``…/{name}/unlockDelete``.

A vault links to at most one resource guard (clients name the proxy ``DppResourceGuardProxy``);
while linked, the vault says ``isVaultProtectedByResourceGuard: true`` and its critical operations
need the guard's approval (``mua.py``). Linking needs the guard owner's say too (Azure: Reader on
the guard), and unlinking is itself critical: it needs an open unlockDelete window for the proxy.
"""

from __future__ import annotations

import msgspec

from dpvault import errors
from dpvault.arm import ids
from dpvault.arm.http import Call, Reply
from dpvault.arm.schema import decode
from dpvault.clock import from_timestamp
from dpvault.model.guards import rules
from dpvault.model.guards.schema import (
    ResourceGuardProxyBase,
    ResourceGuardProxyBaseResource,
    ResourceGuardResource,
    UnlockDeleteRequest,
)
from dpvault.model.keys import instance_key
from dpvault.model.vaults.rules import decode_vault
from dpvault.resources.common import check_provider_call, system_data
from dpvault.resources.guardproxies.mua import Approval, forbidden, unlock_key
from dpvault.resources.vaults.lookups import require_vault
from dpvault.services import Services
from dpvault.store import ResourceRow, Tx
from dpvault.types import GUARD_PROXY_TYPE, Kind

RESOURCE_TYPE = "backupVaults/backupResourceGuardProxies"


def _names(call: Call) -> tuple[str, str, str]:
    p = call.params
    return (
        p["subscriptionId"],
        ids.check_resource_group(p["resourceGroupName"]),
        ids.check_resource_name(p["vaultName"], "backup vault"),
    )


def _proxy_name(call: Call) -> str:
    return ids.check_resource_name(call.params["resourceGuardProxyName"], "resource guard proxy")


def proxy_key(vault_key: str, name: str) -> str:
    return f"{vault_key}/{Kind.GUARD_PROXY.value.lower()}/{name.lower()}"


def _not_found(call: Call, name: str) -> errors.ArmError:
    return errors.resource_not_found(
        f"Microsoft.DataProtection/backupVaults/{call.params['vaultName']}/backupResourceGuardProxies/{name}",
        call.params["resourceGroupName"],
    )


async def _set_guarded(tx: Tx, vault_row: ResourceRow, guarded: bool, now: float) -> None:
    """The vault's read-only isVaultProtectedByResourceGuard follows its proxy."""
    vault = decode_vault(vault_row.body)
    props = msgspec.structs.replace(vault.properties, isVaultProtectedByResourceGuard=guarded)
    body = msgspec.json.encode(msgspec.structs.replace(vault, properties=props))
    await tx.update_resource(vault_row.key, body=body, updated_at=now)


class GuardProxyRoutes:
    def __init__(self, svc: Services) -> None:
        self.svc = svc

    async def put(self, call: Call) -> Reply:
        check_provider_call(self.svc, call, RESOURCE_TYPE)
        sub, rg, vault = _names(call)
        name = _proxy_name(call)
        body = decode(await call.json_body() or b"", ResourceGuardProxyBaseResource)
        guard_id = (body.properties.resourceGuardResourceId or "").strip()
        guard_sub = rules.guard_subscription(guard_id)
        if guard_sub is None:
            raise errors.bad_request(
                f"'{ids.printable(guard_id)}' is not a resource guard id (/subscriptions/…/resourceGroups/…/"
                "providers/Microsoft.DataProtection/resourceGuards/…).",
                target="properties.resourceGuardResourceId",
            )
        approval = Approval(self.svc, call)

        async def write(tx: Tx) -> bytes:
            vault_row = await require_vault(tx, sub, rg, vault, lock=True)
            guard_row = await tx.resource(ids.key(guard_id), lock=False)
            if guard_row is None:
                raise errors.bad_request(
                    f"The resource guard '{ids.printable(guard_id)}' does not exist.",
                    code="UserErrorResourceGuardNotFound",
                    target="properties.resourceGuardResourceId",
                )
            guard = msgspec.json.decode(guard_row.body, type=ResourceGuardResource)
            await approval.owner_approves(
                tx,
                rules.Guard(guard.id or guard_id, guard_sub, frozenset()),
                "Linking a vault to a resource guard",
            )
            existing = await tx.resources_by(Kind.GUARD_PROXY.value, parent_key=vault_row.key)
            key = proxy_key(vault_row.key, name)
            for other in existing:
                current = msgspec.json.decode(other.body, type=ResourceGuardProxyBaseResource)
                if other.key != key:
                    raise errors.conflict(
                        f"Backup vault '{vault}' is already linked to a resource guard (proxy '{other.name}').",
                        code="UserErrorResourceGuardProxyExists",
                    )
                if ids.key(current.properties.resourceGuardResourceId or "") != ids.key(guard_id):
                    raise errors.conflict(
                        "The vault is linked to another resource guard; delete the proxy first (a critical "
                        "operation) to link a different one.",
                        code="UserErrorResourceGuardProxyExists",
                    )
            now = self.svc.now()
            props = guard.properties
            stored = ResourceGuardProxyBaseResource(
                id=f"{ids.vault_id(sub, rg, vault_row.name)}/backupResourceGuardProxies/{name}",
                name=name,
                type=GUARD_PROXY_TYPE,
                systemData=system_data(call, now),
                properties=ResourceGuardProxyBase(
                    resourceGuardResourceId=guard.id or guard_id,
                    resourceGuardOperationDetails=rules.operation_details(guard.id or guard_id, props)
                    if props
                    else [],
                    lastUpdatedTime=from_timestamp(now),
                    description=props.description if props else None,
                ),
            )
            encoded = msgspec.json.encode(stored)
            if existing:
                await tx.update_resource(key, name=name, body=encoded, updated_at=now)
            else:
                await tx.insert_resource(
                    key=key, kind=Kind.GUARD_PROXY.value, subscription=sub.lower(), rg_key=vault_row.rg_key,
                    parent_key=vault_row.key, name=name, body=encoded, state="Succeeded",
                    active_operation=None, revision=1, created_at=now, updated_at=now,
                )  # fmt: skip
            await _set_guarded(tx, vault_row, True, now)
            return encoded

        return Reply.json(200, await self.svc.store.transact(write))

    async def get(self, call: Call) -> Reply:
        check_provider_call(self.svc, call, RESOURCE_TYPE)
        sub, rg, vault = _names(call)
        name = _proxy_name(call)
        async with self.svc.store.read() as tx:
            vault_row = await require_vault(tx, sub, rg, vault)
            row = await tx.resource(proxy_key(vault_row.key, name))
        if row is None:
            raise _not_found(call, name)
        return Reply.json(200, row.body)

    async def list(self, call: Call) -> Reply:
        check_provider_call(self.svc, call, RESOURCE_TYPE)
        sub, rg, vault = _names(call)
        async with self.svc.store.read() as tx:
            vault_row = await require_vault(tx, sub, rg, vault)
            rows = await tx.resources_by(Kind.GUARD_PROXY.value, parent_key=vault_row.key)
        return Reply.json(200, b'{"value":[' + b",".join(r.body for r in rows) + b"]}")

    async def delete(self, call: Call) -> Reply:
        """Unlinking the guard: a critical operation (mandatory), so an unlockDelete window for the
        proxy must be open."""
        check_provider_call(self.svc, call, RESOURCE_TYPE)
        sub, rg, vault = _names(call)
        name = _proxy_name(call)
        approval = Approval(self.svc, call)

        async def write(tx: Tx) -> bool:
            vault_row = await require_vault(tx, sub, rg, vault, lock=True)
            key = proxy_key(vault_row.key, name)
            row = await tx.resource(key)
            if row is None:
                return False
            proxy_id = f"{ids.vault_id(sub, rg, vault_row.name)}/backupResourceGuardProxies/{name}"
            await approval.require_unlocked(
                tx, vault_row, rules.DELETE_PROXY, proxy_id, "Deleting the resource guard proxy"
            )
            await tx.delete_resource(key)
            await tx.delete_resource(unlock_key(vault_row.key, proxy_id))
            await _set_guarded(tx, vault_row, False, self.svc.now())
            return True

        return Reply.empty(200 if await self.svc.store.transact(write) else 204)

    async def unlock_delete(self, call: Call) -> Reply:
        """Open a window (an hour) in which the named resource (an instance of the vault, or the proxy
        itself) may be deleted; the request must carry the guard's approval for that delete."""
        check_provider_call(self.svc, call, RESOURCE_TYPE + "/unlockDelete")
        sub, rg, vault = _names(call)
        name = _proxy_name(call)
        request = decode(await call.json_body() or b"", UnlockDeleteRequest)
        target = (request.resourceToBeDeleted or "").strip().rstrip("/")
        approval = Approval(self.svc, call)

        async def write(tx: Tx) -> float:
            vault_row = await require_vault(tx, sub, rg, vault)
            row = await tx.resource(proxy_key(vault_row.key, name), lock=False)
            if row is None:
                raise _not_found(call, name)
            vault_id = ids.key(ids.vault_id(sub, rg, vault_row.name))
            proxy_id = ids.key(f"{vault_id}/backupResourceGuardProxies/{name}")
            if ids.key(target) == proxy_id:
                operation = rules.DELETE_PROXY
            elif (
                ids.key(target).startswith(vault_id + "/backupinstances/")
                and target.count("/") == vault_id.count("/") + 2
            ):
                operation = rules.DELETE_INSTANCE
                if (
                    await tx.resource(instance_key(vault_row.key, target.rsplit("/", 1)[1]), lock=False)
                    is None
                ):
                    raise errors.bad_request(
                        f"The backup instance '{ids.printable(target)}' does not exist.",
                        code="UserErrorGenericResourceNotFound",
                        target="resourceToBeDeleted",
                    )
            else:
                raise errors.bad_request(
                    "resourceToBeDeleted must be a backup instance of this vault or this resource guard proxy.",
                    target="resourceToBeDeleted",
                )
            proxy = msgspec.json.decode(row.body, type=ResourceGuardProxyBaseResource)
            guard_id = proxy.properties.resourceGuardResourceId or ""
            guard = rules.Guard(guard_id, rules.guard_subscription(guard_id) or "", frozenset())
            if not rules.names_request(request.resourceGuardOperationRequests, guard_id, operation):
                raise forbidden(
                    f"Unlocking the delete of '{target}' needs resourceGuardOperationRequests "
                    f"['{guard_id}/{rules.REQUEST_TYPES[operation]}/default']."
                )
            await approval.owner_approves(tx, guard, "Unlocking a critical delete")
            now = self.svc.now()
            expiry = now + rules.UNLOCK_SECONDS
            key = unlock_key(vault_row.key, target)
            body = msgspec.json.encode({"expiry": expiry, "resource": target})
            if await tx.resource(key) is None:
                await tx.insert_resource(
                    key=key, kind=Kind.UNLOCK.value, subscription=sub.lower(), rg_key=vault_row.rg_key,
                    parent_key=vault_row.key, name=target[-512:], body=body, state="Succeeded",
                    active_operation=None, revision=1, created_at=now, updated_at=now,
                )  # fmt: skip
            else:
                await tx.update_resource(key, body=body, updated_at=now)
            return expiry

        expiry = await self.svc.store.transact(write)
        return Reply.json(200, {"unlockDeleteExpiryTime": from_timestamp(expiry)})

"""Resource guard routes (all synchronous): PUT (201 create / 200 replace), GET, PATCH (tags), DELETE,
lists by resource group and subscription, and the spec's ``{operation}Requests`` GETs.

A guard's writable property is ``vaultCriticalOperationExclusionList`` (checked: known operations,
none of the mandatory ones); the operations it protects are those of Azure's real guards. The
request objects (``…/deleteResourceGuardProxyRequests/default`` and the like) are what approvals
name; each collection has the one object ``default``.
"""

from __future__ import annotations

import msgspec

from dpvault import errors
from dpvault.arm import ids, paging
from dpvault.arm.http import Call, Reply
from dpvault.arm.schema import decode
from dpvault.model.guards import rules
from dpvault.model.guards.schema import PatchResourceGuardInput, ResourceGuardResource
from dpvault.model.keys import group_key
from dpvault.resources import groups
from dpvault.resources.common import check_provider_call, check_tags, system_data
from dpvault.services import Services
from dpvault.store import Tx
from dpvault.types import RESOURCE_GUARD_TYPE, Kind

RESOURCE_TYPE = "resourceGuards"


def guard_id(sub: str, rg: str, name: str) -> str:
    return f"{ids.resource_group_id(sub, rg)}/providers/Microsoft.DataProtection/resourceGuards/{name}"


def _names(call: Call) -> tuple[str, str, str]:
    p = call.params
    return (
        p["subscriptionId"],
        ids.check_resource_group(p["resourceGroupName"]),
        ids.check_resource_name(p["resourceGuardsName"], "resource guard"),
    )


def _not_found(name: str, rg: str) -> errors.ArmError:
    return errors.resource_not_found(f"Microsoft.DataProtection/resourceGuards/{name}", rg)


class ResourceGuardRoutes:
    def __init__(self, svc: Services) -> None:
        self.svc = svc

    async def put(self, call: Call) -> Reply:
        check_provider_call(self.svc, call, RESOURCE_TYPE)
        sub, rg, name = _names(call)
        body = decode(await call.json_body() or b"", ResourceGuardResource)
        check_tags(body.tags)
        ids.check_location(body.location, RESOURCE_GUARD_TYPE)
        exclusions = body.properties.vaultCriticalOperationExclusionList if body.properties else None
        props = rules.guard_properties(exclusions)
        key = ids.key(guard_id(sub, rg, name))

        async def write(tx: Tx) -> tuple[int, bytes]:
            await groups.ensure(tx, self.svc, sub, rg, body.location.replace(" ", "").lower())
            row = await tx.resource(key)
            previous = msgspec.json.decode(row.body, type=ResourceGuardResource) if row else None
            now = self.svc.now()
            stored = ResourceGuardResource(
                id=guard_id(sub, rg, name),
                name=name,
                type=RESOURCE_GUARD_TYPE,
                location=previous.location if previous else body.location,
                tags=body.tags,
                eTag=body.eTag,
                systemData=system_data(call, now, previous.systemData if previous else None),
                properties=props,
            )
            encoded = msgspec.json.encode(stored)
            if row is None:
                await tx.insert_resource(
                    key=key, kind=Kind.RESOURCE_GUARD.value, subscription=sub.lower(), rg_key=group_key(sub, rg),
                    parent_key=group_key(sub, rg), name=name, body=encoded, state="Succeeded",
                    active_operation=None, revision=1, created_at=now, updated_at=now,
                )  # fmt: skip
                return 201, encoded
            await tx.update_resource(key, name=name, body=encoded, revision=row.revision + 1, updated_at=now)
            return 200, encoded

        status, encoded = await self.svc.store.transact(write)
        return Reply.json(status, encoded)

    async def get(self, call: Call) -> Reply:
        check_provider_call(self.svc, call, RESOURCE_TYPE)
        sub, rg, name = _names(call)
        async with self.svc.store.read() as tx:
            await groups.require(tx, sub, rg)
            row = await tx.resource(ids.key(guard_id(sub, rg, name)))
        if row is None:
            raise _not_found(name, rg)
        return Reply.json(200, row.body)

    async def patch(self, call: Call) -> Reply:
        check_provider_call(self.svc, call, RESOURCE_TYPE)
        sub, rg, name = _names(call)
        patch = decode(await call.json_body() or b"", PatchResourceGuardInput)
        check_tags(patch.tags)

        async def write(tx: Tx) -> bytes:
            row = await tx.resource(ids.key(guard_id(sub, rg, name)))
            if row is None:
                await groups.require(tx, sub, rg)
                raise _not_found(name, rg)
            guard = msgspec.json.decode(row.body, type=ResourceGuardResource)
            now = self.svc.now()
            updated = msgspec.structs.replace(
                guard,
                tags=patch.tags if patch.tags is not None else guard.tags,
                systemData=system_data(call, now, guard.systemData),
            )
            encoded = msgspec.json.encode(updated)
            await tx.update_resource(row.key, body=encoded, revision=row.revision + 1, updated_at=now)
            return encoded

        return Reply.json(200, await self.svc.store.transact(write))

    async def delete(self, call: Call) -> Reply:
        check_provider_call(self.svc, call, RESOURCE_TYPE)
        sub, rg, name = _names(call)

        async def write(tx: Tx) -> bool:
            row = await tx.resource(ids.key(guard_id(sub, rg, name)))
            if row is None:
                await groups.require(tx, sub, rg)
                return False
            await tx.delete_resource(row.key)
            return True

        return Reply.empty(200 if await self.svc.store.transact(write) else 204)

    async def list_in_group(self, call: Call) -> Reply:
        check_provider_call(self.svc, call, RESOURCE_TYPE)
        sub = call.params["subscriptionId"]
        rg = ids.check_resource_group(call.params["resourceGroupName"])
        after, size = paging.window(call, self.svc.settings.page_size)
        async with self.svc.store.read() as tx:
            await groups.require(tx, sub, rg)
            rows = await tx.resources_by(
                Kind.RESOURCE_GUARD.value, rg_key=group_key(sub, rg), after_pk=after, limit=size + 1
            )
        return Reply.json(200, paging.reply_rows(call, rows, size))

    async def list_in_subscription(self, call: Call) -> Reply:
        check_provider_call(self.svc, call, RESOURCE_TYPE)
        after, size = paging.window(call, self.svc.settings.page_size)
        async with self.svc.store.read() as tx:
            rows = await tx.resources_by(
                Kind.RESOURCE_GUARD.value,
                subscription=call.params["subscriptionId"].lower(),
                after_pk=after,
                limit=size + 1,
            )
        return Reply.json(200, paging.reply_rows(call, rows, size))

    # -- the {operation}Requests objects ------------------------------------------------------

    def requests(self, collection: str, *, single: bool) -> object:
        async def handler(call: Call) -> Reply:
            check_provider_call(self.svc, call, f"{RESOURCE_TYPE}/{collection}")
            sub, rg, name = _names(call)
            async with self.svc.store.read() as tx:
                await groups.require(tx, sub, rg)
                row = await tx.resource(ids.key(guard_id(sub, rg, name)))
            if row is None:
                raise _not_found(name, rg)
            guard = msgspec.json.decode(row.body, type=ResourceGuardResource)
            item = {
                "id": f"{guard.id}/{collection}/default",
                "name": "default",
                "type": f"{RESOURCE_GUARD_TYPE}/{collection}",
            }
            if not single:
                return Reply.json(200, {"value": [item]})
            request_name = call.params["requestName"]
            if request_name.lower() != "default":
                raise errors.resource_not_found(
                    f"Microsoft.DataProtection/resourceGuards/{name}/{collection}/{ids.printable(request_name)}",
                    rg,
                )
            return Reply.json(200, item)

        return handler

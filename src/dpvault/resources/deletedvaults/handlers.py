"""``GET /subscriptions/{s}/providers/Microsoft.DataProtection/locations/{l}/deletedVaults[/{name}]``."""

from __future__ import annotations

import msgspec

from dpvault.arm import ids, paging
from dpvault.arm.http import Call, Reply, encode
from dpvault.model.versions import vault_view
from dpvault.resources.common import check_provider_since
from dpvault.resources.deletedvaults.records import deleted_vault_id, location_scope, not_found
from dpvault.services import Services
from dpvault.types import Kind

RESOURCE_TYPE = "locations/deletedVaults"


class DeletedVaultRoutes:
    def __init__(self, svc: Services) -> None:
        self.svc = svc

    async def list(self, call: Call) -> Reply:
        version = check_provider_since(self.svc, call, RESOURCE_TYPE, "2025-09-01")
        sub = call.params["subscriptionId"]
        after, size = paging.window(call, self.svc.settings.page_size)
        async with self.svc.store.read() as tx:
            rows = await tx.resources_by(
                Kind.DELETED_VAULT.value,
                parent_key=ids.key(location_scope(sub, call.params["location"])),
                after_pk=after,
                limit=size + 1,
            )
        more = len(rows) > size
        rows = rows[:size]
        items = [encode(vault_view(msgspec.json.decode(r.body), version)) for r in rows]
        return Reply.json(200, paging.body(call, items, str(rows[-1].pk) if more else None))

    async def get(self, call: Call) -> Reply:
        version = check_provider_since(self.svc, call, RESOURCE_TYPE, "2025-09-01")
        sub, name = call.params["subscriptionId"], call.params["deletedVaultName"]
        async with self.svc.store.read() as tx:
            row = await tx.resource(ids.key(deleted_vault_id(sub, call.params["location"], name)))
        if row is None:
            raise not_found(name)
        return Reply.json(200, vault_view(msgspec.json.decode(row.body), version))

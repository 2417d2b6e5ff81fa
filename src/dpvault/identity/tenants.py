"""Tenants and subscriptions: a subscription belongs to one tenant.

The first request for a subscription claims it for the caller's tenant (or an operator registers it:
``dpvault subscriptions add``). A token of another tenant then gets 403 ``AuthorizationFailed``, and
never any data. Ownership never changes, so it is cached per process.
"""

from __future__ import annotations

from typing import Any

from dpvault import errors
from dpvault.arm import apiversions, ids
from dpvault.arm.http import Call, Principal, Reply
from dpvault.services import Services


def forbidden(principal: Principal, sub: str) -> errors.ArmError:
    return errors.ArmError(
        403,
        "AuthorizationFailed",
        f"The client '{principal.display}' with object id '{principal.subject}' does not have authorization to "
        f"perform this action over scope '/subscriptions/{sub}' or the scope is invalid. The subscription "
        "belongs to another tenant.",
    )


class Tenants:
    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self._owner: dict[str, str] = {}

    async def owner(self, sub: str, tenant: str) -> str:
        key = sub.lower()
        found = self._owner.get(key)
        if found is None:
            row = await self.svc.store.transact(
                lambda tx: tx.claim_subscription(key, tenant, now=self.svc.now())
            )
            found = self._owner[key] = row["tenant"]
        return found

    async def authorize(self, principal: Principal, sub: str) -> None:
        if (await self.owner(sub, principal.tenant)).lower() != principal.tenant.lower():
            raise forbidden(principal, sub)

    @staticmethod
    def _body(row: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": f"/subscriptions/{row['id']}",
            "subscriptionId": row["id"],
            "tenantId": row["tenant"],
            "displayName": row["display_name"],
            "state": "Enabled",
            "subscriptionPolicies": {
                "locationPlacementId": "Public_2014-09-01",
                "quotaId": "dpvault",
                "spendingLimit": "Off",
            },
            "authorizationSource": "RoleBased",
        }

    async def list(self, call: Call) -> Reply:
        apiversions.check_resources(call.api_version)
        assert call.principal is not None
        async with self.svc.store.read() as tx:
            rows = await tx.subscriptions_of(call.principal.tenant)
        return Reply.json(200, {"value": [self._body(r) for r in rows]})

    async def get(self, call: Call) -> Reply:
        apiversions.check_resources(call.api_version)
        assert call.principal is not None
        sub = ids.check_subscription(call.params["subscriptionId"]).lower()
        await self.authorize(call.principal, sub)
        async with self.svc.store.read() as tx:
            row = await tx.subscription(sub)
        assert row is not None
        return Reply.json(200, self._body(row))

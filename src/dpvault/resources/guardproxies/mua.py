"""Multi-user authorization of critical operations, as handlers call it.

dpvault has no RBAC. Azure asks the caller to hold "Backup MUA Operator" on the resource guard
(just-in-time, through PIM); dpvault maps that to: the request speaks for the tenant that owns the
guard's subscription, through the caller's own token or a token of that tenant in
``x-ms-authorization-auxiliary`` (``Bearer <token>``, comma-separated as ARM allows, each validated
like the Authorization header). Every refusal is a 403 ``LinkedAuthorizationFailed``: ARM's code
for an operation whose linked resource (here the guard) the caller may not act on.
"""

from __future__ import annotations

import msgspec

from dpvault import errors
from dpvault.arm import ids
from dpvault.arm.http import Call
from dpvault.model.guards import rules
from dpvault.model.guards.schema import ResourceGuardProxyBaseResource, ResourceGuardResource
from dpvault.services import Services
from dpvault.store import ResourceRow, Tx
from dpvault.types import Kind

AUXILIARY = "x-ms-authorization-auxiliary"
_GUARDED = b'"isVaultProtectedByResourceGuard":true'


def guarded(vault_row: ResourceRow) -> bool:
    """A vault linked to a resource guard (its body says so; no statement needed)."""
    return _GUARDED in vault_row.body


def forbidden(message: str) -> errors.ArmError:
    return errors.ArmError(403, "LinkedAuthorizationFailed", message, target="resourceGuardOperationRequests")


def unlock_key(vault_key: str, resource_id: str) -> str:
    """Where an open unlockDelete window for ``resource_id`` is kept (a child row of the vault)."""
    return f"{vault_key}/{Kind.UNLOCK.value.lower()}/{ids.key(resource_id.strip().rstrip('/'))}"


async def linked_guard(tx: Tx, vault_key: str) -> tuple[ResourceRow, rules.Guard] | None:
    """The vault's proxy row and the guard it links, read in the caller's transaction."""
    proxies = await tx.resources_by(Kind.GUARD_PROXY.value, parent_key=vault_key, limit=1)
    if not proxies:
        return None
    proxy = msgspec.json.decode(proxies[0].body, type=ResourceGuardProxyBaseResource)
    guard_id = proxy.properties.resourceGuardResourceId or ""
    guard_row = await tx.resource(ids.key(guard_id), lock=False)
    excluded: frozenset[str] = frozenset()
    if guard_row is not None:
        guard = msgspec.json.decode(guard_row.body, type=ResourceGuardResource)
        excluded = frozenset(
            (guard.properties.vaultCriticalOperationExclusionList or []) if guard.properties else []
        )
    return proxies[0], rules.Guard(guard_id, rules.guard_subscription(guard_id) or "", excluded)


class Approval:
    """The approvals one request carries: made before its transaction, checked inside it."""

    def __init__(self, svc: Services, call: Call) -> None:
        self.svc = svc
        self.call = call
        self._tenants: set[str] | None = None

    async def tenants(self) -> set[str]:
        """The tenants the request speaks for: the caller's, and each valid auxiliary token's
        (an invalid one is a 401, as the Authorization header's would be)."""
        if self._tenants is None:
            assert self.call.principal is not None
            found = {self.call.principal.tenant.lower()}
            header = self.call.headers.get(AUXILIARY, "")
            for part in header.split(","):
                token = part.strip()
                if not token:
                    continue
                if not token.lower().startswith("bearer "):
                    token = f"Bearer {token}"
                assert self.svc.verify_token is not None
                found.add((await self.svc.verify_token(token)).tenant.lower())
            self._tenants = found
        return self._tenants

    async def owner_approves(self, tx: Tx, guard: rules.Guard, what: str) -> None:
        """403 unless the request speaks for the tenant owning the guard's subscription."""
        row = await tx.subscription(guard.subscription.lower()) if guard.subscription else None
        owner = str(row["tenant"]).lower() if row else None
        if owner is None or owner not in await self.tenants():
            raise forbidden(
                f"{what} needs the approval of the resource guard '{guard.guard_id}': the request must come "
                "from the guard's tenant, or carry a token of it in x-ms-authorization-auxiliary."
            )

    async def require(
        self, tx: Tx, vault_row: ResourceRow, operation: str, requests: list[str] | None, what: str
    ) -> None:
        """A critical operation with a body: it must name the guard's request for it
        (``resourceGuardOperationRequests``), approved by the guard's owner."""
        if not guarded(vault_row):
            return
        linked = await linked_guard(tx, vault_row.key)
        if linked is None or not linked[1].protects(operation):
            return
        guard = linked[1]
        if not rules.names_request(requests, guard.guard_id, operation):
            wanted = f"{guard.guard_id}/{rules.REQUEST_TYPES[operation]}/default"
            raise forbidden(
                f"{what} is a critical operation ({operation}) of a vault protected by the resource guard "
                f"'{guard.guard_id}': send resourceGuardOperationRequests ['{wanted}'] with the guard's approval."
            )
        await self.owner_approves(tx, guard, what)

    async def require_unlocked(
        self, tx: Tx, vault_row: ResourceRow, operation: str, resource_id: str, what: str
    ) -> None:
        """A critical delete (no body): an unlockDelete window for ``resource_id`` must be open."""
        if not guarded(vault_row):
            return
        linked = await linked_guard(tx, vault_row.key)
        if linked is None or not linked[1].protects(operation):
            return
        grant = await tx.resource(unlock_key(vault_row.key, resource_id), lock=False)
        expiry = msgspec.json.decode(grant.body).get("expiry", 0.0) if grant is not None else 0.0
        if expiry <= self.svc.now():
            guard = linked[1]
            raise forbidden(
                f"{what} is a critical operation ({operation}) of a vault protected by the resource guard "
                f"'{guard.guard_id}': first POST …/backupResourceGuardProxies/{linked[0].name}/unlockDelete with "
                f"resourceGuardOperationRequests ['{guard.guard_id}/{rules.REQUEST_TYPES[operation]}/default'] "
                f"and resourceToBeDeleted '{resource_id}'."
            )

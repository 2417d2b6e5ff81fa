"""Backup vault routes: PUT (201/200, LRO), GET, PATCH, DELETE, lists, checkNameAvailability."""

from __future__ import annotations

import msgspec

from dpvault import errors
from dpvault.arm import ids, paging
from dpvault.arm.http import Call, Reply
from dpvault.arm.schema import decode
from dpvault.errors import ArmError, internal_error
from dpvault.jobs.worker import Claimed
from dpvault.model import operations, payloads
from dpvault.model.keys import group_key, vault_key
from dpvault.model.vaults import rules
from dpvault.model.vaults.schema import (
    BackupVault,
    BackupVaultResource,
    CheckNameAvailabilityRequest,
    PatchResourceRequestInput,
)
from dpvault.resources import groups
from dpvault.resources.common import check_provider_call, check_tags, fingerprint, system_data
from dpvault.resources.operations import vault_status_url
from dpvault.resources.vaults.lookups import require_vault
from dpvault.services import Services
from dpvault.store import Tx
from dpvault.types import VAULT_TYPE, Kind, OperationKind, OperationStatus, ProvisioningState

RESOURCE_TYPE = "backupVaults"


def _names(call: Call) -> tuple[str, str, str]:
    p = call.params
    return (
        p["subscriptionId"],
        ids.check_resource_group(p["resourceGroupName"]),
        ids.check_resource_name(p["vaultName"], "backup vault"),
    )


def _merge(base: msgspec.Struct | None, patch: msgspec.Struct | None) -> msgspec.Struct | None:
    """JSON merge-patch (RFC 7396) over spec Structs: fields the patch sets replace, recursively."""
    if patch is None:
        return base
    if base is None:
        return patch
    changes = {}
    for field in patch.__struct_fields__:
        value = getattr(patch, field)
        if value is None:
            continue
        current = getattr(base, field)
        if isinstance(value, msgspec.Struct) and isinstance(current, msgspec.Struct):
            value = _merge(current, value)
        changes[field] = value
    return msgspec.structs.replace(base, **changes)


class VaultRoutes:
    def __init__(self, svc: Services) -> None:
        self.svc = svc

    async def put(self, call: Call) -> Reply:
        version = check_provider_call(self.svc, call, RESOURCE_TYPE)
        sub, rg, name = _names(call)
        body = decode(await call.json_body() or b"", BackupVaultResource)
        check_tags(body.tags)
        if not body.location.strip():
            raise errors.bad_request("The property 'location' must not be empty.", target="location")
        ids.check_location(body.location, VAULT_TYPE)
        requested_state = body.properties.provisioningState
        key = vault_key(sub, rg, name)
        request_hash = fingerprint("vault.put", body.location, body.tags, body.identity, body.properties)
        scope = operations.Scope(sub, rg, name, rules.normalize_location(body.location))

        async def write(tx: Tx) -> tuple[int, bytes, str]:
            await groups.ensure(tx, self.svc, sub, rg, scope.location)
            row = await tx.resource(key)
            previous = rules.decode_vault(row.body) if row else None
            if row is not None and row.active_operation:
                op = await tx.operation(row.active_operation, lock=False)  # the vault row is held
                if op is not None and not op.terminal:
                    if op.request_hash == request_hash:
                        return (201 if op.kind == OperationKind.CREATE else 200), row.body, op.id
                    raise errors.conflict(
                        f"Another operation ({op.kind}) is in progress on backup vault '{name}'; retry when it ends.",
                        code="AnotherOperationInProgress",
                    )
            if previous is not None:
                if rules.normalize_location(previous.location) != scope.location:
                    raise errors.bad_request(
                        f"The backup vault '{name}' already exists in location '{previous.location}'; "
                        f"a vault cannot move to '{body.location}'.",
                        code="InvalidResourceLocation",
                        target="location",
                    )
                if requested_state and requested_state.lower() != row.state.lower():
                    raise errors.bad_request(
                        "The property 'properties.provisioningState' is read-only.",
                        target="properties.provisioningState",
                    )
            creating = row is None
            state = ProvisioningState.PROVISIONING if creating else ProvisioningState.UPDATING
            identity = rules.identity_for(
                body.identity, previous.identity if previous else None, self.svc.settings.tenant_id
            )
            props: BackupVault = msgspec.structs.replace(
                body.properties,
                provisioningState=state.value,
                resourceMoveState=previous.properties.resourceMoveState if previous else "Unknown",
                isVaultProtectedByResourceGuard=False,
                resourceMoveDetails=None,
            )
            stored = BackupVaultResource(
                id=ids.vault_id(sub, rg, name),
                name=name,
                type=VAULT_TYPE,
                location=previous.location if previous else body.location,
                tags=body.tags,
                identity=identity,
                systemData=system_data(call, self.svc.now(), previous.systemData if previous else None),
                properties=props,
            )
            encoded = msgspec.json.encode(stored)
            op = await operations.start(
                tx, now=self.svc.now(),
                kind=OperationKind.CREATE if creating else OperationKind.UPDATE,
                scope=scope, resource_key=key, resource_path=ids.vault_id(sub, rg, name),
                api_version=version, request_hash=request_hash,
            )  # fmt: skip
            await payloads.enqueue(tx, payloads.ProvisionVault(operation=op.id), now=self.svc.real_now())
            now = self.svc.now()
            if creating:
                await tx.insert_resource(
                    key=key, kind=Kind.VAULT.value, subscription=sub.lower(), rg_key=scope.rg_key,
                    parent_key=scope.rg_key, name=name, body=encoded, state=state.value,
                    active_operation=op.id, revision=1, created_at=now, updated_at=now,
                )  # fmt: skip
            else:
                await tx.update_resource(
                    key, name=name, body=encoded, state=state.value, active_operation=op.id,
                    revision=row.revision + 1, updated_at=now,
                )  # fmt: skip
            return (201 if creating else 200), encoded, op.id

        status, encoded, op_id = await self.svc.store.transact(write)
        self.svc.wake_worker()
        headers = {
            "Azure-AsyncOperation": vault_status_url(call, scope, op_id, version),
            "Retry-After": str(self.svc.settings.retry_after),
        }
        return Reply.json(status, encoded, headers)

    async def get(self, call: Call) -> Reply:
        check_provider_call(self.svc, call, RESOURCE_TYPE)
        sub, rg, name = _names(call)
        async with self.svc.store.read() as tx:
            row = await require_vault(tx, sub, rg, name)
        return Reply.json(200, row.body)

    async def patch(self, call: Call) -> Reply:
        check_provider_call(self.svc, call, RESOURCE_TYPE)
        sub, rg, name = _names(call)
        patch = decode(await call.json_body() or b"", PatchResourceRequestInput)
        check_tags(patch.tags)

        async def write(tx: Tx) -> bytes:
            row = await require_vault(tx, sub, rg, name, lock=True)
            if row.active_operation:
                raise errors.conflict(
                    f"Another operation is in progress on backup vault '{name}'; retry when it ends.",
                    code="AnotherOperationInProgress",
                )
            vault = rules.decode_vault(row.body)
            props = _merge(vault.properties, patch.properties)
            updated = msgspec.structs.replace(
                vault,
                name=name,
                id=ids.vault_id(sub, rg, name),
                tags=patch.tags if patch.tags is not None else vault.tags,
                identity=rules.identity_for(patch.identity, vault.identity, self.svc.settings.tenant_id),
                systemData=system_data(call, self.svc.now(), vault.systemData),
                properties=props,
            )
            encoded = msgspec.json.encode(updated)
            await tx.update_resource(
                row.key, name=name, body=encoded, revision=row.revision + 1, updated_at=self.svc.now()
            )
            return encoded

        return Reply.json(200, await self.svc.store.transact(write))

    async def delete(self, call: Call) -> Reply:
        check_provider_call(self.svc, call, RESOURCE_TYPE)
        sub, rg, name = _names(call)
        key = vault_key(sub, rg, name)

        async def write(tx: Tx) -> bool:
            row = await tx.resource(key)
            if row is None:
                await groups.require(tx, sub, rg)
                return False
            busy = await tx.busy_resources(parent_key=key)
            if row.active_operation or busy:
                raise errors.conflict(
                    f"Backup vault '{name}' cannot be deleted while an operation is in progress on it.",
                    code="AnotherOperationInProgress",
                )
            count = await tx.count_resources(Kind.INSTANCE.value, parent_key=key)
            if count:
                raise errors.conflict(
                    f"Backup vault '{name}' holds {count} backup instance(s). Delete them before deleting the vault.",
                    code="BackupVaultNotEmpty",
                )
            await tx.delete_resources(parent_key=key)
            await tx.delete_resource(key)
            await tx.forget_vaults([key])
            return True

        existed = await self.svc.store.transact(write)
        return Reply.empty(200 if existed else 204)

    async def list_in_group(self, call: Call) -> Reply:
        check_provider_call(self.svc, call, RESOURCE_TYPE)
        sub = call.params["subscriptionId"]
        rg = ids.check_resource_group(call.params["resourceGroupName"])
        after, size = paging.window(call, self.svc.settings.page_size)
        async with self.svc.store.read() as tx:
            await groups.require(tx, sub, rg)
            rows = await tx.resources_by(
                Kind.VAULT.value, rg_key=group_key(sub, rg), after_pk=after, limit=size + 1
            )
        return Reply.json(200, paging.reply_rows(call, rows, size))

    async def list_in_subscription(self, call: Call) -> Reply:
        check_provider_call(self.svc, call, RESOURCE_TYPE)
        after, size = paging.window(call, self.svc.settings.page_size)
        async with self.svc.store.read() as tx:
            rows = await tx.resources_by(
                Kind.VAULT.value,
                subscription=call.params["subscriptionId"].lower(),
                after_pk=after,
                limit=size + 1,
            )
        return Reply.json(200, paging.reply_rows(call, rows, size))

    async def check_name(self, call: Call) -> Reply:
        check_provider_call(self.svc, call, RESOURCE_TYPE)
        sub = call.params["subscriptionId"]
        rg = ids.check_resource_group(call.params["resourceGroupName"])
        request = decode(await call.json_body() or b"", CheckNameAvailabilityRequest)
        if not request.name:
            raise errors.bad_request("The property 'name' is required.", target="name")
        if request.type and request.type.lower() != VAULT_TYPE.lower():
            raise errors.bad_request(
                f"The type '{ids.printable(request.type)}' is not supported; expected '{VAULT_TYPE}'.",
                target="type",
            )
        try:
            ids.check_resource_name(request.name, "backup vault")
        except errors.ArmError as exc:
            return Reply.json(200, {"nameAvailable": False, "reason": "Invalid", "message": exc.message})
        async with self.svc.store.read() as tx:
            row = await tx.resource(vault_key(sub, rg, request.name))
        if row is not None:
            return Reply.json(
                200,
                {
                    "nameAvailable": False,
                    "reason": "AlreadyExists",
                    "message": f"The vault name '{request.name}' is already in use.",
                },
            )
        return Reply.json(200, {"nameAvailable": True})


class VaultJobs:
    """The job that finishes a vault PUT (there is nothing to build locally beyond the record)."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc

    async def provision(self, claimed: Claimed[payloads.ProvisionVault]) -> None:
        await self._settle(claimed.payload.operation, OperationStatus.SUCCEEDED)

    async def give_up(self, claimed: Claimed[payloads.ProvisionVault], error: str) -> None:
        """Out of attempts: the operation fails and the vault says so."""
        failure = internal_error(f"Provisioning the vault failed: {error}")
        await self._settle(claimed.payload.operation, OperationStatus.FAILED, failure)

    async def _settle(self, op_id: str, status: OperationStatus, error: ArmError | None = None) -> None:
        """End a vault operation: the vault's provisioningState follows (Succeeded or Failed)."""
        svc = self.svc

        async def write(tx: Tx) -> None:
            op = await tx.operation(op_id)
            if op is None or op.terminal:
                return
            row = await tx.resource(op.resource_key)
            now = svc.now()
            if row is not None and row.active_operation == op_id:
                vault = rules.decode_vault(row.body)
                vault = msgspec.structs.replace(
                    vault,
                    properties=msgspec.structs.replace(vault.properties, provisioningState=status.value),
                )
                await tx.update_resource(
                    row.key,
                    body=msgspec.json.encode(vault),
                    state=status.value,
                    active_operation=None,
                    updated_at=now,
                )
            await operations.finish(tx, op_id, now=now, status=status, error=error, op=op)

        await svc.store.transact(write)

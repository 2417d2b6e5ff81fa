"""Backup vault routes: PUT (201/200, LRO), GET, PATCH, DELETE, lists, checkNameAvailability."""

from __future__ import annotations

import msgspec

from dpvault import errors
from dpvault.arm import ids, paging
from dpvault.arm.http import Call, Reply
from dpvault.arm.schema import convert, decode, decode_json
from dpvault.errors import ArmError, internal_error
from dpvault.jobs.worker import Claimed
from dpvault.model import operations, payloads
from dpvault.model.keys import group_key, vault_key
from dpvault.model.vaults import rules
from dpvault.model.vaults.schema import (
    BackupVaultResource,
    CheckNameAvailabilityRequest,
    PatchResourceRequestInput,
)
from dpvault.model.versions import since, vault_body
from dpvault.resources import groups
from dpvault.resources.common import check_provider_call, check_tags, fingerprint, system_data
from dpvault.resources.deletedvaults import records
from dpvault.resources.guardproxies.mua import Approval
from dpvault.resources.operations import vault_status_url
from dpvault.resources.vaults.lookups import require_vault
from dpvault.services import Services
from dpvault.store import Tx
from dpvault.types import VAULT_TYPE, Kind, OperationKind, OperationStatus, ProvisioningState
from dpvault.vault.points import RecoveryPoints

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


def _has_storage(raw: object, undelete: bool) -> bool:
    """Whether a vault body's properties name storageSettings (any casing, not null). An undelete
    may send no properties at all (PowerShell sends location and identity): they are the deleted
    vault's."""
    if not isinstance(raw, dict):
        return True  # convert() reports the shape
    name = next((k for k in raw if k.lower() == "properties" and raw[k] is not None), None)
    if name is None and undelete:
        raw["properties"], name = {}, "properties"
    props = raw.get(name) if name else None
    if not isinstance(props, dict):
        return True
    raw["properties"] = raw.pop(name)
    return any(k.lower() == "storagesettings" and v is not None for k, v in props.items())


class VaultRoutes:
    def __init__(self, svc: Services, points: RecoveryPoints) -> None:
        self.svc = svc
        self.points = points

    async def put(self, call: Call) -> Reply:
        version = check_provider_call(self.svc, call, RESOURCE_TYPE)
        sub, rg, name = _names(call)
        raw = decode_json(await call.json_body() or b"")
        deleted_id = call.headers.get(records.HEADER) if since(version, records.DEPLOYED_IN) else None
        storage_given = _has_storage(raw, bool(deleted_id))
        if not storage_given and (deleted_id or since(version, "2026-06-01")):
            # not required from 2026-06-01 on (and an undelete keeps the deleted vault's)
            raw["properties"]["storageSettings"] = [
                {"datastoreType": "VaultStore", "type": "LocallyRedundant"}
            ]
        body = convert(raw, BackupVaultResource)
        check_tags(body.tags)
        if not body.location.strip():
            raise errors.bad_request("The property 'location' must not be empty.", target="location")
        ids.check_location(body.location, VAULT_TYPE)
        requested_state = body.properties.provisioningState
        key = vault_key(sub, rg, name)
        request_hash = fingerprint("vault.put", body.location, body.tags, body.identity, body.properties)
        scope = operations.Scope(sub, rg, name, rules.normalize_location(body.location))
        approval = Approval(self.svc, call)

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
            undeleting = None
            if deleted_id:  # undelete: the deleted vault comes back under its own name
                if row is not None:
                    raise errors.conflict(
                        f"A backup vault named '{name}' exists; a deleted vault cannot be restored over it.",
                        code="UserErrorBackupVaultExists",
                    )
                undeleting = await records.find(tx, sub, deleted_id, body.location)
                original = undeleting[2]
                if ids.key(original["vaultKey"]) != key:
                    raise errors.bad_request(
                        f"The deleted vault was '{original['vaultName']}' in its own resource group; restore it "
                        "under that name.",
                        target=records.HEADER,
                    )
                previous = rules.decode_vault(msgspec.json.encode(original["vault"]))
            if previous is not None:
                if rules.normalize_location(previous.location) != scope.location:
                    raise errors.bad_request(
                        f"The backup vault '{name}' already exists in location '{previous.location}'; "
                        f"a vault cannot move to '{body.location}'.",
                        code="InvalidResourceLocation",
                        target="location",
                    )
                if row is not None and requested_state and requested_state.lower() != row.state.lower():
                    raise errors.bad_request(
                        "The property 'properties.provisioningState' is read-only.",
                        target="properties.provisioningState",
                    )
            creating = row is None
            state = ProvisioningState.PROVISIONING if creating else ProvisioningState.UPDATING
            identity = rules.identity_for(
                body.identity, previous.identity if previous else None, self.svc.settings.tenant_id
            )
            requested = body.properties
            tags = body.tags
            if undeleting is not None and previous is not None:  # what the PUT leaves out comes back
                if not storage_given:
                    requested = msgspec.structs.replace(
                        requested, storageSettings=previous.properties.storageSettings
                    )
                requested = _merge(previous.properties, requested)  # type: ignore[assignment]
                tags = body.tags if body.tags is not None else previous.tags
            props, critical = rules.security_change(previous.properties if previous else None, requested)
            if row is not None:
                for operation in critical:
                    await approval.require(
                        tx,
                        row,
                        operation,
                        requested.resourceGuardOperationRequests,
                        "Changing the vault's security",
                    )
            props = msgspec.structs.replace(
                props,
                provisioningState=state.value,
                resourceMoveState=previous.properties.resourceMoveState if previous else "Unknown",
                isVaultProtectedByResourceGuard=bool(
                    row is not None and previous and previous.properties.isVaultProtectedByResourceGuard
                ),
                resourceMoveDetails=None,
                resourceGuardOperationRequests=None,
                secureScore=None,
                bcdrSecurityLevel=None,
            )
            stored = BackupVaultResource(
                id=ids.vault_id(sub, rg, name),
                name=name,
                type=VAULT_TYPE,
                location=previous.location if previous else body.location,
                tags=tags,
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
            if undeleting is not None:
                await records.restore(tx, self.svc, undeleting[0], undeleting[2])
            return (201 if creating else 200), encoded, op.id

        status, encoded, op_id = await self.svc.store.transact(write)
        self.svc.wake_worker()
        headers = {
            "Azure-AsyncOperation": vault_status_url(call, scope, op_id, version),
            "Retry-After": str(self.svc.settings.retry_after),
        }
        return Reply.json(status, vault_body(encoded, version), headers)

    async def get(self, call: Call) -> Reply:
        version = check_provider_call(self.svc, call, RESOURCE_TYPE)
        sub, rg, name = _names(call)
        async with self.svc.store.read() as tx:
            row = await require_vault(tx, sub, rg, name)
        return Reply.json(200, vault_body(row.body, version))

    async def patch(self, call: Call) -> Reply:
        version = check_provider_call(self.svc, call, RESOURCE_TYPE)
        sub, rg, name = _names(call)
        patch = decode(await call.json_body() or b"", PatchResourceRequestInput)
        check_tags(patch.tags)
        approval = Approval(self.svc, call)

        async def write(tx: Tx) -> bytes:
            row = await require_vault(tx, sub, rg, name, lock=True)
            if row.active_operation:
                raise errors.conflict(
                    f"Another operation is in progress on backup vault '{name}'; retry when it ends.",
                    code="AnotherOperationInProgress",
                )
            vault = rules.decode_vault(row.body)
            props = _merge(vault.properties, patch.properties)
            requests = patch.properties.resourceGuardOperationRequests if patch.properties else None
            props, critical = rules.security_change(vault.properties, props)  # type: ignore[arg-type]
            for operation in critical:
                await approval.require(tx, row, operation, requests, "Changing the vault's security")
            props = msgspec.structs.replace(props, resourceGuardOperationRequests=None)
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

        return Reply.json(200, vault_body(await self.svc.store.transact(write), version))

    async def delete(self, call: Call) -> Reply:
        """409 while the vault holds backup instances, soft-deleted ones included (as Azure); with soft
        delete On or AlwaysOn the vault becomes a deleted vault (kept its retention days)."""
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
            deleted = await tx.count_resources(Kind.DELETED_INSTANCE.value, parent_key=key)
            if deleted:
                raise errors.conflict(
                    f"Backup vault '{name}' holds {deleted} soft-deleted backup instance(s), kept until their "
                    "retention ends. Undelete and delete them in a vault without soft delete, or wait for "
                    "their purge, before deleting the vault.",
                    code="BackupVaultNotEmpty",
                )
            days = rules.soft_delete_days(rules.decode_vault(row.body).properties)
            if days is not None:
                await records.soft_delete(tx, self.svc, row, msgspec.json.decode(row.body), days, sub, rg)
            await tx.delete_resources(parent_key=key)
            await tx.delete_resource(key)
            await tx.forget_vaults([key])
            return True

        existed = await self.svc.store.transact(write)
        if existed:  # what its deleted instances left (shared packs not yet collected, its data key)
            await self.points.delete_vaults([key])
        return Reply.empty(200 if existed else 204)

    async def list_in_group(self, call: Call) -> Reply:
        version = check_provider_call(self.svc, call, RESOURCE_TYPE)
        sub = call.params["subscriptionId"]
        rg = ids.check_resource_group(call.params["resourceGroupName"])
        after, size = paging.window(call, self.svc.settings.page_size)
        async with self.svc.store.read() as tx:
            await groups.require(tx, sub, rg)
            rows = await tx.resources_by(
                Kind.VAULT.value, rg_key=group_key(sub, rg), after_pk=after, limit=size + 1
            )
        return Reply.json(200, paging.reply_rows(call, rows, size, lambda b: vault_body(b, version)))

    async def list_in_subscription(self, call: Call) -> Reply:
        version = check_provider_call(self.svc, call, RESOURCE_TYPE)
        after, size = paging.window(call, self.svc.settings.page_size)
        async with self.svc.store.read() as tx:
            rows = await tx.resources_by(
                Kind.VAULT.value,
                subscription=call.params["subscriptionId"].lower(),
                after_pk=after,
                limit=size + 1,
            )
        return Reply.json(200, paging.reply_rows(call, rows, size, lambda b: vault_body(b, version)))

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

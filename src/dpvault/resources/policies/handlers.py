"""Backup policy routes: PUT (synchronous 200 for create and replace), GET, DELETE, list."""

from __future__ import annotations

import msgspec

from dpvault import errors
from dpvault.arm import ids, paging
from dpvault.arm.http import Call, Reply
from dpvault.arm.schema import decode
from dpvault.model import immutability
from dpvault.model.instances.schema import BackupInstanceResource
from dpvault.model.keys import policy_key
from dpvault.model.policies import rules
from dpvault.model.policies.rules import decode_policy
from dpvault.model.policies.schema import BaseBackupPolicyResource
from dpvault.resources.common import check_provider_call, system_data
from dpvault.resources.vaults.lookups import require_vault
from dpvault.services import Services
from dpvault.store import Tx
from dpvault.types import POLICY_TYPE, Kind

RESOURCE_TYPE = "backupVaults/backupPolicies"
_instance_decoder = msgspec.json.Decoder(BackupInstanceResource)


def _names(call: Call) -> tuple[str, str, str, str]:
    p = call.params
    return (
        p["subscriptionId"],
        ids.check_resource_group(p["resourceGroupName"]),
        ids.check_resource_name(p["vaultName"], "backup vault"),
        ids.check_resource_name(p["backupPolicyName"], "backup policy"),
    )


def _not_found(name: str, vault: str, rg: str) -> errors.ArmError:
    return errors.resource_not_found(
        f"Microsoft.DataProtection/backupVaults/{vault}/backupPolicies/{name}", rg
    )


async def _users(tx: Tx, vault_key: str, key: str) -> list[str]:
    """Names of the instances using the policy -- soft-deleted ones too: an undeleted instance comes
    back to its policy."""
    users = []
    for kind in (Kind.INSTANCE.value, Kind.DELETED_INSTANCE.value):
        for inst in await tx.resources_by(kind, parent_key=vault_key):
            if ids.key(_instance_decoder.decode(inst.body).properties.policyInfo.policyId) == key:
                users.append(inst.name)
    return users


async def _in_use(tx: Tx, vault_key: str, key: str) -> bool:
    return bool(await _users(tx, vault_key, key))


class PolicyRoutes:
    def __init__(self, svc: Services) -> None:
        self.svc = svc

    async def put(self, call: Call) -> Reply:
        check_provider_call(self.svc, call, RESOURCE_TYPE)
        sub, rg, vault, name = _names(call)
        body = decode(await call.json_body() or b"", BaseBackupPolicyResource)
        rules.validate(body.properties)
        policy = rules.with_tag_ids(body.properties)
        key = policy_key(sub, rg, vault, name)

        async def write(tx: Tx) -> bytes:
            vault_row = await require_vault(tx, sub, rg, vault)
            row = await tx.resource(key)
            previous = decode_policy(row.body) if row else None
            if (
                previous is not None
                and immutability.is_immutable(vault_row)
                and await _in_use(tx, vault_row.key, key)
            ):
                immutability.check_retention_change(previous.properties, policy)
            stored = BaseBackupPolicyResource(
                id=ids.child_id(sub, rg, vault, Kind.POLICY.value, name),
                name=name,
                type=POLICY_TYPE,
                systemData=system_data(call, self.svc.now(), previous.systemData if previous else None),
                properties=policy,
            )
            encoded = msgspec.json.encode(stored)
            now = self.svc.now()
            if row is None:
                await tx.insert_resource(
                    key=key, kind=Kind.POLICY.value, subscription=sub.lower(), rg_key=vault_row.rg_key,
                    parent_key=vault_row.key, name=name, body=encoded, state="Succeeded",
                    active_operation=None, revision=1, created_at=now, updated_at=now,
                )  # fmt: skip
            else:
                await tx.update_resource(
                    key, name=name, body=encoded, revision=row.revision + 1, updated_at=now
                )
                await tx.reschedule_policy(key, now=now)
            return encoded

        encoded = await self.svc.store.transact(write)
        self.svc.wake_scheduler()
        return Reply.json(200, encoded)

    async def get(self, call: Call) -> Reply:
        check_provider_call(self.svc, call, RESOURCE_TYPE)
        sub, rg, vault, name = _names(call)
        async with self.svc.store.read() as tx:
            await require_vault(tx, sub, rg, vault)
            row = await tx.resource(policy_key(sub, rg, vault, name))
        if row is None:
            raise _not_found(name, vault, rg)
        return Reply.json(200, row.body)

    async def delete(self, call: Call) -> Reply:
        check_provider_call(self.svc, call, RESOURCE_TYPE)
        sub, rg, vault, name = _names(call)
        key = policy_key(sub, rg, vault, name)

        async def write(tx: Tx) -> bool:
            vault_row = await require_vault(tx, sub, rg, vault)
            row = await tx.resource(key)
            if row is None:
                return False
            users = await _users(tx, vault_row.key, key)
            if users:
                raise errors.conflict(
                    f"Backup policy '{name}' is used by backup instance(s) {', '.join(users[:5])}; "
                    "stop their protection or move them to another policy first.",
                    code="PolicyInUse",
                )
            await tx.delete_resource(key)
            return True

        existed = await self.svc.store.transact(write)
        return Reply.empty(200 if existed else 204)

    async def list(self, call: Call) -> Reply:
        check_provider_call(self.svc, call, RESOURCE_TYPE)
        p = call.params
        sub, rg = p["subscriptionId"], ids.check_resource_group(p["resourceGroupName"])
        vault = ids.check_resource_name(p["vaultName"], "backup vault")
        after, size = paging.window(call, self.svc.settings.page_size)
        async with self.svc.store.read() as tx:
            vault_row = await require_vault(tx, sub, rg, vault)
            rows = await tx.resources_by(
                Kind.POLICY.value, parent_key=vault_row.key, after_pk=after, limit=size + 1
            )
        return Reply.json(200, paging.reply_rows(call, rows, size))

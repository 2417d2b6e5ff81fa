"""Backup instance routes: the PUT (201/200 + Azure-AsyncOperation), GET, list, DELETE (202), and
``validateForBackup``. Each write records resource, operation and job in one transaction; the
worker (``lifecycle.py``) finishes the operation.
"""

from __future__ import annotations

import msgspec

from dpvault import errors
from dpvault.arm import ids, paging
from dpvault.arm.http import Call, Reply
from dpvault.arm.schema import decode
from dpvault.model import backup_jobs, immutability, operations, payloads
from dpvault.model.guards import rules as guard_rules
from dpvault.model.instances import rules
from dpvault.model.instances.schema import (
    BackupInstanceResource,
    TriggerBackupRequest,
    ValidateForBackupRequest,
)
from dpvault.model.keys import instance_key, vault_key
from dpvault.model.policies.rules import backup_rule, decode_policy, default_retention_tag
from dpvault.model.policies.schema import AzureRetentionRule
from dpvault.model.vaults.rules import vault_location
from dpvault.model.versions import instance_body
from dpvault.protection.service import Protection, not_backed_up
from dpvault.resources.common import check_provider_call, check_tags, fingerprint, system_data
from dpvault.resources.deletedinstances import soft_delete
from dpvault.resources.guardproxies.mua import Approval
from dpvault.resources.instances.lookups import instance_not_found, require_instance, resolve_policy
from dpvault.resources.operations import accepted, instance_result_url, vault_status_url
from dpvault.resources.vaults.lookups import require_vault
from dpvault.services import Services
from dpvault.store import ResourceRow, Tx
from dpvault.types import (
    INSTANCE_TYPE,
    Kind,
    OperationKind,
    OperationStatus,
    ProtectionState,
    ProvisioningState,
)

RESOURCE_TYPE = "backupVaults/backupInstances"


def _vault_names(call: Call) -> tuple[str, str, str]:
    p = call.params
    return (
        p["subscriptionId"],
        ids.check_resource_group(p["resourceGroupName"]),
        ids.check_resource_name(p["vaultName"], "backup vault"),
    )


def _instance_name(call: Call) -> str:
    return ids.check_resource_name(call.params["backupInstanceName"], "backup instance")


def _busy(name: str, kind: str) -> errors.ArmError:
    return errors.conflict(
        f"Another operation ({kind}) is in progress on backup instance '{name}'; retry when it has ended.",
        code="AnotherOperationInProgress",
    )


class InstanceRoutes:
    def __init__(self, svc: Services, protection: Protection) -> None:
        self.svc = svc
        self.protection = protection

    def _put_headers(
        self, call: Call, scope: operations.Scope, name: str, op_id: str, version: str
    ) -> dict[str, str]:
        return {
            "Azure-AsyncOperation": vault_status_url(call, scope, op_id, version),
            "Location": instance_result_url(call, scope, name, op_id, version),
            "Retry-After": str(self.svc.settings.retry_after),
        }

    async def put(self, call: Call) -> Reply:
        version = check_provider_call(self.svc, call, RESOURCE_TYPE)
        sub, rg, vault = _vault_names(call)
        name = _instance_name(call)
        body = decode(await call.json_body() or b"", BackupInstanceResource)
        check_tags(body.tags)
        rules.check_shape(body.properties)
        request_hash = fingerprint("instance.put", body.tags, body.properties)
        # A datasource named by ARM id only (a storage account, a flexible server) is checked at every
        # PUT: clients that send no validationType (Terraform) would otherwise see ProtectionConfigured
        # for an account dpvault cannot reach, as Azure's own checks of the vault's access would not.
        engine = self.protection.engine_for(body.properties)
        deep = body.properties.validationType == "DeepValidation" or (
            getattr(engine, "uses_source_mapping", False)
            and body.properties.datasourceAuthCredentials is None
        )
        policy_key, _ = rules.policy_key_of(body.properties)
        vkey = vault_key(sub, rg, vault)
        key = instance_key(vkey, name)
        approval = Approval(self.svc, call)

        async def write(tx: Tx) -> tuple[int, bytes, str, operations.Scope]:
            # vault and policy FOR SHARE, then the instance FOR UPDATE (one statement on SQLite)
            rows = await tx.resources([vkey, policy_key], update=key)
            vault_row = rows.get(vkey) or await require_vault(tx, sub, rg, vault)
            scope = operations.Scope(sub, rg, vault, vault_location(vault_row))
            row = rows.get(key)
            previous = rules.decode_instance(row.body) if row else None
            if row is not None and row.active_operation:
                op = await tx.operation(row.active_operation, lock=False)
                if op is not None and not op.terminal:
                    if op.kind != OperationKind.DELETE and op.request_hash == request_hash:
                        return (201 if op.kind == OperationKind.CREATE else 200), row.body, op.id, scope
                    raise _busy(name, op.kind)
            if row is not None:  # issue 13: an update of a guarded vault's instance is critical
                await approval.require(
                    tx, vault_row, guard_rules.MODIFY_INSTANCE,
                    body.properties.resourceGuardOperationRequests, "Modifying a backup instance",
                )  # fmt: skip
            requested_state = body.properties.provisioningState
            if row is not None and requested_state and requested_state.lower() != row.state.lower():
                raise errors.bad_request(
                    "The property 'properties.provisioningState' is read-only.",
                    target="properties.provisioningState",
                )
            policy_row, policy = await resolve_policy(tx, body.properties, vault_row, prefetched=rows)
            creating = row is None
            provisioning = ProvisioningState.PROVISIONING if creating else ProvisioningState.UPDATING
            protection = ProtectionState.CONFIGURING if creating else ProtectionState.UPDATING
            stored = BackupInstanceResource(
                id=ids.child_id(sub, rg, vault, Kind.INSTANCE.value, name),
                name=name,
                type=INSTANCE_TYPE,
                tags=body.tags,
                systemData=system_data(call, self.svc.now(), previous.systemData if previous else None),
                properties=rules.stored_properties(
                    body.properties, policy_row=policy_row, policy=policy,
                    provisioning=provisioning.value, protection=protection,
                ),
            )  # fmt: skip
            encoded = msgspec.json.encode(stored)
            job_id = None
            if deep:  # a deep validation is work worth a job; a shallow PUT is only a record change
                job_id = await backup_jobs.create(
                    tx, now=self.svc.now(), subscription=sub, vault_key=vault_row.key, vault_name=vault_row.name,
                    instance_key=key, instance_id=stored.id, instance=stored.properties,
                    operation="ConfigureBackup", category="Backup", user_triggered=True,
                    details={"ValidationType": "DeepValidation"},
                )  # fmt: skip
            op = await operations.start(
                tx, now=self.svc.now(),
                kind=OperationKind.CREATE if creating else OperationKind.UPDATE,
                scope=scope, resource_key=key, resource_path=stored.id or "",
                api_version=version, request_hash=request_hash,
            )  # fmt: skip
            configure = payloads.ConfigureInstance(operation=op.id, deep=deep, job=job_id)
            await payloads.enqueue(tx, configure, now=self.svc.real_now())
            now = self.svc.now()
            if creating:
                await tx.insert_resource(
                    key=key, kind=Kind.INSTANCE.value, subscription=sub.lower(), rg_key=vault_row.rg_key,
                    parent_key=vault_row.key, name=name, body=encoded, state=provisioning.value,
                    active_operation=op.id, revision=1, created_at=now, updated_at=now,
                )  # fmt: skip
            else:
                await tx.update_resource(
                    key, name=name, body=encoded, state=provisioning.value, active_operation=op.id,
                    revision=row.revision + 1, updated_at=now,
                )  # fmt: skip
            return (201 if creating else 200), encoded, op.id, scope

        status, encoded, op_id, scope = await self.svc.store.transact(write)
        self.svc.wake_worker()
        return Reply.json(
            status, instance_body(encoded, version), self._put_headers(call, scope, name, op_id, version)
        )

    async def _find(self, tx: Tx, call: Call) -> tuple[ResourceRow, ResourceRow | None, str]:
        sub, rg, vault = _vault_names(call)
        name = _instance_name(call)
        vault_row = await require_vault(tx, sub, rg, vault)
        return vault_row, await tx.resource(instance_key(vault_row.key, name)), name

    async def get(self, call: Call) -> Reply:
        version = check_provider_call(self.svc, call, RESOURCE_TYPE)
        async with self.svc.store.read() as tx:
            vault_row, row, name = await self._find(tx, call)
        if row is None:
            raise instance_not_found(name, vault_row.name, call.params["resourceGroupName"])
        return Reply.json(200, instance_body(row.body, version))

    async def list(self, call: Call) -> Reply:
        version = check_provider_call(self.svc, call, RESOURCE_TYPE)
        sub, rg, vault = _vault_names(call)
        after, size = paging.window(call, self.svc.settings.page_size)
        async with self.svc.store.read() as tx:
            vault_row = await require_vault(tx, sub, rg, vault)
            rows = await tx.resources_by(
                Kind.INSTANCE.value, parent_key=vault_row.key, after_pk=after, limit=size + 1
            )
        return Reply.json(200, paging.reply_rows(call, rows, size, lambda b: instance_body(b, version)))

    async def delete(self, call: Call) -> Reply:
        version = check_provider_call(self.svc, call, RESOURCE_TYPE)
        sub, rg, vault = _vault_names(call)
        name = _instance_name(call)
        approval = Approval(self.svc, call)

        async def write(tx: Tx) -> tuple[str, operations.Scope] | None:
            vault_row = await require_vault(tx, sub, rg, vault)
            scope = operations.Scope(sub, rg, vault, vault_location(vault_row))
            row = await tx.resource(instance_key(vault_row.key, name))
            if row is None:
                return None
            if row.active_operation:
                op = await tx.operation(row.active_operation, lock=False)
                if op is not None and not op.terminal:
                    if op.kind == OperationKind.DELETE:
                        return op.id, scope  # a repeated DELETE gets the same URLs (ARM-22)
                    raise _busy(name, op.kind)
            # The row is locked now: a restore starting meanwhile waits, then sees it Deleting.
            if await tx.restores_in_progress(row.key):
                raise errors.conflict(
                    f"A restore from backup instance '{name}' is in progress; deleting the instance would "
                    "delete the recovery point it reads. Retry when the restore job has ended.",
                    code="AnotherOperationInProgress",
                )
            current = rules.decode_instance(row.body)
            # issue 13: the resource guard's approval, and whether the vault soft-deletes
            days = await soft_delete.check_delete(tx, approval, vault_row, row, current)
            if days is None and immutability.is_immutable(vault_row):  # a soft delete keeps the points
                kept = immutability.unexpired(await tx.recovery_points_of(row.key), self.svc.now())
                if kept:
                    raise immutability.deletion_refused(f"Backup instance '{name}'", kept)
            resource = rules.with_state(
                current, provisioning=ProvisioningState.DELETING.value,
                protection=ProtectionState.SOFT_DELETING if days is not None else None,
            )  # fmt: skip
            op = await operations.start(
                tx, now=self.svc.now(),
                kind=OperationKind.DELETE, scope=scope, resource_key=row.key,
                resource_path=resource.id or "", api_version=version,
                request_hash=fingerprint("instance.delete"),
            )  # fmt: skip
            delete = payloads.DeleteInstance(operation=op.id, softDeleteDays=days)
            await payloads.enqueue(tx, delete, now=self.svc.real_now())
            await tx.update_resource(
                row.key, body=msgspec.json.encode(resource), state=ProvisioningState.DELETING.value,
                active_operation=op.id, updated_at=self.svc.now(),
            )  # fmt: skip
            return op.id, scope

        started = await self.svc.store.transact(write)
        if started is None:
            return Reply.empty(204)
        op_id, scope = started
        self.svc.wake_worker()
        return accepted(call, scope, op_id, version, self.svc.settings.retry_after)

    async def validate_for_backup(self, call: Call) -> Reply:
        version = check_provider_call(self.svc, call, "backupVaults/validateForBackup")
        sub, rg, vault = _vault_names(call)
        request = decode(await call.json_body() or b"", ValidateForBackupRequest)
        rules.check_shape(request.backupInstance, base="backupInstance")

        async def write(tx: Tx) -> tuple[str, operations.Scope]:
            vault_row = await require_vault(tx, sub, rg, vault)
            scope = operations.Scope(sub, rg, vault, vault_location(vault_row))
            await resolve_policy(tx, request.backupInstance, vault_row, base="backupInstance")
            job_id = await backup_jobs.create(
                tx, now=self.svc.now(), subscription=sub, vault_key=vault_row.key, vault_name=vault_row.name,
                instance_key=None, instance_id=None, instance=request.backupInstance,
                operation="ValidateForBackup", category="Backup", user_triggered=True,
            )  # fmt: skip
            op = await operations.start(
                tx, now=self.svc.now(),
                kind=OperationKind.VALIDATE, scope=scope, resource_key=vault_row.key,
                resource_path=ids.vault_id(sub, rg, vault), api_version=version,
                request_hash=fingerprint("validate", request.backupInstance),
            )  # fmt: skip
            validate = payloads.ValidateForBackup(
                operation=op.id,
                backupInstance=rules.without_secret(request.backupInstance),
                job=job_id,
                subscription=sub,
            )
            await payloads.enqueue(tx, validate, now=self.svc.real_now())
            return op.id, scope

        op_id, scope = await self.svc.store.transact(write)
        self.svc.wake_worker()
        return accepted(call, scope, op_id, version, self.svc.settings.retry_after)

    async def backup(self, call: Call) -> Reply:
        """Adhoc backup (TriggerBackupRequest): 202; the operation's result names the backup job."""
        version = check_provider_call(self.svc, call, "backupVaults/backupInstances/backup")
        sub, rg, vault = _vault_names(call)
        name = _instance_name(call)
        request = decode(await call.json_body() or b"", TriggerBackupRequest)
        options = request.backupRuleOptions

        async def write(tx: Tx) -> tuple[str, operations.Scope]:
            vault_row = await require_vault(tx, sub, rg, vault)
            scope = operations.Scope(sub, rg, vault, vault_location(vault_row))
            row = await require_instance(tx, vault_row, name, vault=vault, rg=rg)
            if row.active_operation:
                raise _busy(name, "configure")
            resource = rules.decode_instance(row.body)
            state = resource.properties.currentProtectionState
            if state != ProtectionState.CONFIGURED.value:
                raise errors.conflict(
                    f"Backup instance '{name}' is {state}; a backup needs ProtectionConfigured.",
                    code="UserErrorBackupInstanceNotProtected",
                )
            if self.protection.engine_for(resource.properties) is None:
                unsupported = not_backed_up(resource.properties.dataSourceInfo.datasourceType)
                raise errors.bad_request(unsupported.message, code=unsupported.code)
            policy_row = await tx.resource(resource.properties.policyInfo.policyId.lower())
            policy = decode_policy(policy_row.body).properties if policy_row else None
            rule = backup_rule(policy, options.ruleName) if policy else None
            if rule is None:
                raise errors.bad_request(
                    f"The policy has no backup rule named '{options.ruleName}'.",
                    code="UserErrorInvalidRuleName", target="backupRuleOptions.ruleName",
                )  # fmt: skip
            tag = options.triggerOption.retentionTagOverride if options.triggerOption else None
            if tag:
                retention = {
                    r.name.lower(): r.name for r in policy.policyRules if isinstance(r, AzureRetentionRule)
                }
                if tag.lower() not in retention:
                    raise errors.bad_request(
                        f"The policy has no retention rule for the tag '{tag}'; choose one of {sorted(retention.values())}.",
                        code="UserErrorInvalidRetentionTag", target="backupRuleOptions.triggerOption.retentionTagOverride",
                    )  # fmt: skip
                tag = retention[tag.lower()]
            else:
                tag = default_retention_tag(policy)
            job_id = await self.protection.backups.start(
                tx, instance=row, rule_name=rule.name, tag=tag, occurrence=None, user_triggered=True
            )
            op = await operations.start(
                tx, now=self.svc.now(), kind=OperationKind.BACKUP, scope=scope, resource_key=row.key,
                resource_path=resource.id or "", api_version=version, request_hash=fingerprint("backup", options),
            )  # fmt: skip
            await operations.finish(
                tx, op.id, now=self.svc.now(), status=OperationStatus.SUCCEEDED,
                result={"jobId": job_id, "objectType": "OperationJobExtendedInfo"}, op=op,
            )  # fmt: skip
            return op.id, scope

        op_id, scope = await self.svc.store.transact(write)
        self.svc.wake_worker()
        return accepted(call, scope, op_id, version, self.svc.settings.retry_after)

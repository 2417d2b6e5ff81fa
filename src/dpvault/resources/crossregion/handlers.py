"""``POST …/resourceGroups/{rg}/providers/Microsoft.DataProtection/locations/{l}/`` +
``crossRegionRestore``, ``validateCrossRegionRestore``, ``fetchSecondaryRecoveryPoints``,
``fetchCrossRegionRestoreJob``, ``fetchCrossRegionRestoreJobs``.

Cross-region restore reads the copy of a geo-redundant vault in its paired region. dpvault keeps one
copy, in one place: the request is checked (its shape, the source vault or instance, which must be
the caller's), then refused with a 400 ``UserErrorCrossRegionRestoreNotEnabled`` naming why: the
vault does not have ``featureSettings.crossRegionRestoreSettings.state: Enabled``, or, when it does
(the setting is kept), dpvault has no secondary region to read from.
"""

from __future__ import annotations

from typing import Any

from dpvault import errors
from dpvault.arm import ids
from dpvault.arm.http import Call, Reply
from dpvault.arm.schema import decode
from dpvault.model.keys import instance_key, vault_key
from dpvault.model.restores.schema import (
    CrossRegionRestoreJobRequest,
    CrossRegionRestoreJobsRequest,
    CrossRegionRestoreRequestObject,
    FetchSecondaryRPsRequestParameters,
)
from dpvault.model.vaults.rules import decode_vault
from dpvault.resources.common import check_provider_since
from dpvault.services import Services

CODE = "UserErrorCrossRegionRestoreNotEnabled"


def _parse(resource_id: str, depth: int) -> tuple[str, str, str, str | None] | None:
    """(subscription, resource group, vault, instance or None) of a vault (depth 8) or instance
    (depth 10) id, or None."""
    parts = resource_id.strip().strip("/").split("/")
    if len(parts) != depth:
        return None
    literals = [p.lower() for p in parts[0::2]]
    expected = ["subscriptions", "resourcegroups", "providers", "backupvaults", "backupinstances"][
        : depth // 2
    ]
    if literals != expected or parts[5].lower() != "microsoft.dataprotection":
        return None
    return parts[1], parts[3], parts[7], parts[9] if depth == 10 else None


class CrossRegionRoutes:
    def __init__(self, svc: Services) -> None:
        self.svc = svc

    async def _refuse(self, call: Call, source: str, depth: int, target: str) -> Reply:
        parsed = _parse(source, depth)
        what = "backup instance" if depth == 10 else "backup vault"
        if parsed is None:
            raise errors.bad_request(f"'{ids.printable(source)}' is not a {what} id.", target=target)
        sub, rg, vault, name = parsed
        assert self.svc.authorize is not None and call.principal is not None
        await self.svc.authorize(call.principal, ids.check_subscription(sub))
        async with self.svc.store.read() as tx:
            vault_row = await tx.resource(vault_key(sub, rg, vault))
            instance = await tx.resource(instance_key(vault_row.key, name)) if vault_row and name else None
        if vault_row is None or (name is not None and instance is None):
            raise errors.bad_request(f"The source {what} '{ids.printable(source)}' does not exist.",
                                     code="UserErrorGenericResourceNotFound", target=target)  # fmt: skip
        features = decode_vault(vault_row.body).properties.featureSettings
        crr = features.crossRegionRestoreSettings if features else None
        if crr is None or crr.state != "Enabled":
            message = (
                f"Cross region restore is not enabled for backup vault '{vault_row.name}': set "
                "featureSettings.crossRegionRestoreSettings.state to Enabled on a geo-redundant vault."
            )
        else:
            message = (
                f"Backup vault '{vault_row.name}' has cross region restore enabled, but dpvault keeps each vault "
                "in one place: there is no secondary region to restore from."
            )
        raise errors.bad_request(message, code=CODE, target=target)

    async def _body(self, call: Call, tp: Any, name: str) -> Any:
        check_provider_since(self.svc, call, f"locations/{name}", "2023-11-01")
        ids.check_resource_group(call.params["resourceGroupName"])
        return decode(await call.json_body() or b"", tp)

    async def trigger(self, call: Call) -> Reply:
        request = await self._body(call, CrossRegionRestoreRequestObject, "crossRegionRestore")
        details = request.crossRegionRestoreDetails
        return await self._refuse(
            call, details.sourceBackupInstanceId, 10, "crossRegionRestoreDetails.sourceBackupInstanceId"
        )

    async def validate(self, call: Call) -> Reply:
        request = await self._body(call, CrossRegionRestoreRequestObject, "validateCrossRegionRestore")
        details = request.crossRegionRestoreDetails
        return await self._refuse(
            call, details.sourceBackupInstanceId, 10, "crossRegionRestoreDetails.sourceBackupInstanceId"
        )

    async def secondary_points(self, call: Call) -> Reply:
        request = await self._body(call, FetchSecondaryRPsRequestParameters, "fetchSecondaryRecoveryPoints")
        if not request.sourceBackupInstanceId:
            raise errors.bad_request(
                "The property 'sourceBackupInstanceId' is required.", target="sourceBackupInstanceId"
            )
        return await self._refuse(call, request.sourceBackupInstanceId, 10, "sourceBackupInstanceId")

    async def job(self, call: Call) -> Reply:
        request = await self._body(call, CrossRegionRestoreJobRequest, "fetchCrossRegionRestoreJob")
        return await self._refuse(call, request.sourceBackupVaultId, 8, "sourceBackupVaultId")

    async def jobs(self, call: Call) -> Reply:
        request = await self._body(call, CrossRegionRestoreJobsRequest, "fetchCrossRegionRestoreJobs")
        return await self._refuse(call, request.sourceBackupVaultId, 8, "sourceBackupVaultId")

"""Recovery point routes: ``GET …/backupInstances/{bi}/recoveryPoints`` ($filter on startDate/endDate,
paged newest first) and ``…/recoveryPoints/{recoveryPointId}``."""

from __future__ import annotations

import re
from datetime import UTC
from typing import Any
from urllib.parse import quote

import msgspec

from dpvault import errors
from dpvault.arm import ids, paging
from dpvault.arm.http import Call, Reply, encode
from dpvault.clock import from_timestamp
from dpvault.model.policies.schedule import ScheduleError, parse_datetime
from dpvault.model.versions import recovery_point_view
from dpvault.resources.common import check_provider_call
from dpvault.resources.instances.lookups import require_instance
from dpvault.resources.vaults.lookups import require_vault
from dpvault.services import Services
from dpvault.store import RecoveryPointRow, ResourceRow, Tx

RESOURCE_TYPE = "backupVaults/backupInstances/recoveryPoints"
RP_TYPE = "Microsoft.DataProtection/backupVaults/backupInstances/recoveryPoints"
_CLAUSE = re.compile(r"^\s*(\w+)\s+(eq|ge|gt|le|lt)\s+'([^']*)'\s*$", re.IGNORECASE)
_FILTER_FIELDS = {
    "startdate",
    "enddate",
    "restorepointdatastoreid",
    "isvisible",
    "extendedinfo",
    "restorepointstate",
}


def _metadata(rp: RecoveryPointRow, details: dict[str, Any]) -> str:
    """The data store's metaData: what dpvault knows about the stored bytes, as key:value pairs."""
    parts = [f"sha256:{rp.sha256}", f"size:{rp.size}", f"tables:{details.get('tables', 0)}"]
    if details.get("databases") is not None:  # a whole server: its databases, comma-separated
        parts.append("databases:" + ",".join(quote(d, safe="") for d in details["databases"]))
    if details.get("containers") is not None:  # blob containers: their names, comma-separated
        parts.append("containers:" + ",".join(details["containers"]))
    if details.get("blobs") is not None:
        parts.append(f"blobs:{details['blobs']}")
    drill = details.get("drill")
    if drill:
        parts.append(f"drill:{drill['status']}@{drill['time']}")
    return ";".join(parts)


def render(rp: RecoveryPointRow, instance_id: str) -> dict[str, Any]:
    details = msgspec.json.decode(rp.details)
    created = from_timestamp(rp.time)
    store: dict[str, Any] = {
        "id": rp.id,
        "type": rp.data_store,
        "creationTime": created,
        "metaData": _metadata(rp, details),
        "state": "COMMITTED",
        "visible": True,
    }
    props: dict[str, Any] = {
        "objectType": "AzureBackupDiscreteRecoveryPoint",
        "recoveryPointId": rp.id,
        "recoveryPointTime": created,
        "recoveryPointType": "Full",
        "friendlyName": rp.id,
        "policyName": rp.policy_name,
        "policyVersion": rp.policy_version,
        "retentionTagName": rp.tag,
        "retentionTagVersion": rp.policy_version,
        "recoveryPointDataStoresDetails": [store],
    }
    if rp.expiry is not None:
        props["expiryTime"] = from_timestamp(rp.expiry)
        store["expiryTime"] = props["expiryTime"]
    return {
        "id": f"{instance_id}/recoveryPoints/{rp.id}",
        "name": rp.id,
        "type": RP_TYPE,
        "properties": props,
    }


def parse_filter(text: str | None) -> tuple[float | None, float | None]:
    """(start, end) from ``startDate eq '...' and endDate eq '...'``; other known fields are ignored."""
    if not text:
        return None, None
    start = end = None
    for clause in re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE):
        match = _CLAUSE.match(clause)
        if not match or match.group(1).lower() not in _FILTER_FIELDS:
            raise errors.bad_request(
                f"The $filter '{ids.printable(text)}' is not supported; use startDate eq '<ISO 8601>' and endDate eq '<ISO 8601>'.",
                code="InvalidFilter",
            )
        field, value = match.group(1).lower(), match.group(3)
        if field in ("startdate", "enddate"):
            try:
                moment = parse_datetime(value)
            except ScheduleError:
                raise errors.bad_request(
                    f"'{ids.printable(value)}' is not an ISO 8601 date-time.", code="InvalidFilter"
                ) from None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            # times are shown to the microsecond; compare at that precision
            if field == "startdate":
                start = moment.timestamp() - 5e-7
            else:
                end = moment.timestamp() + 5e-7
    return start, end


class RecoveryPointRoutes:
    def __init__(self, svc: Services) -> None:
        self.svc = svc

    async def _instance(self, tx: Tx, call: Call) -> ResourceRow:
        p = call.params
        sub, rg = p["subscriptionId"], ids.check_resource_group(p["resourceGroupName"])
        vault = ids.check_resource_name(p["vaultName"], "backup vault")
        name = ids.check_resource_name(p["backupInstanceName"], "backup instance")
        vault_row = await require_vault(tx, sub, rg, vault)
        return await require_instance(tx, vault_row, name, vault=vault, rg=rg)

    async def list(self, call: Call) -> Reply:
        version = check_provider_call(self.svc, call, RESOURCE_TYPE)
        start, end = parse_filter(call.query.get("$filter"))
        after = _after(call)
        size = self.svc.settings.page_size
        async with self.svc.store.read() as tx:
            row = await self._instance(tx, call)
            points = await tx.recovery_points_of(row.key, start=start, end=end, after=after, limit=size + 1)
        instance_id = msgspec.json.decode(row.body)["id"]
        more = len(points) > size
        points = points[:size]
        items = [encode(recovery_point_view(render(p, instance_id), version)) for p in points]
        last = points[-1] if points else None
        return Reply.json(
            200, paging.body(call, items, f"{last.time!r}|{last.id}" if more and last else None)
        )

    async def get(self, call: Call) -> Reply:
        version = check_provider_call(self.svc, call, RESOURCE_TYPE)
        rp_id = call.params["recoveryPointId"]
        async with self.svc.store.read() as tx:
            row = await self._instance(tx, call)
            rp = await tx.recovery_point(rp_id.lower())
        if rp is None or rp.instance_key != row.key or rp.state != "available":
            raise errors.resource_not_found(
                f"Microsoft.DataProtection/backupVaults/{call.params['vaultName']}/backupInstances/{row.name}"
                f"/recoveryPoints/{ids.printable(rp_id)}",
                call.params["resourceGroupName"],
            )
        return Reply.json(200, recovery_point_view(render(rp, msgspec.json.decode(row.body)["id"]), version))


def _after(call: Call) -> tuple[float, str] | None:
    """(time, id) of the last point of the previous page, from ``$skipToken``."""
    text = paging.cursor(call)
    if text is None:
        return None
    try:
        t, rid = text.split("|", 1)
        return float(t), rid
    except ValueError:
        raise paging.invalid_token(call.query["$skiptoken"]) from None

"""Source mappings: where dpvault finds a datasource that a request names only by its ARM id.

Azure reaches a flexible server or a storage account with the vault's managed identity and RBAC;
dpvault has neither, so an operator maps the ARM id to a connection string (``dpvault sources set
<id>``), stored encrypted and tenant-scoped in the local secret store. A request's ARM id is looked
up for the tenant that owns the asking instance's subscription, never another tenant's.

Two kinds of id are mapped:

- a PostgreSQL flexible server (``.../providers/Microsoft.DBforPostgreSQL/flexibleServers/<name>``)
  to a libpq or ADO.NET connection string, checked by the postgres engine's parser;
- a storage account (``.../providers/Microsoft.Storage/storageAccounts/<name>``) to an Azure Storage
  connection string with AccountName and AccountKey (or Azurite's ``UseDevelopmentStorage=true``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from dpvault.datastores.urls import connection_string_fields as storage_fields
from dpvault.errors import UserError

if TYPE_CHECKING:
    from dpvault.engines.base import Engine, Params
    from dpvault.model.instances.schema import BackupInstance
    from dpvault.protection.credentials import Credentials
    from dpvault.secrets.local import LocalSecretStore

Kind = Literal["postgres-flexible-server", "storage-account"]

# /subscriptions/<s>/resourceGroups/<g>/providers/<namespace>/<type>/<name>, lower-cased
_ID = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourcegroups/(?P<rg>[^/]+)/providers/"
    r"(?P<provider>[a-z0-9.]+/[a-z0-9]+)/(?P<name>[^/]+)$"
)
_KINDS: dict[str, Kind] = {
    "microsoft.dbforpostgresql/flexibleservers": "postgres-flexible-server",
    "microsoft.storage/storageaccounts": "storage-account",
}
_ACCOUNT = re.compile(r"^[a-z0-9]{3,24}$")


@dataclass(frozen=True, slots=True)
class SourceId:
    """A mapped datasource's ARM id, normalised (lower case, no trailing slash)."""

    key: str
    kind: Kind
    subscription: str
    name: str


def parse_id(resource_id: str) -> SourceId:
    """The normalised id, or UserError ``UserErrorInvalidSourceId`` naming what is wrong."""
    key = resource_id.strip().rstrip("/").lower()
    match = _ID.match(key)
    if match is None:
        raise UserError(
            "UserErrorInvalidSourceId",
            f"'{resource_id[:300]}' is not the ARM id of a resource: expected "
            "/subscriptions/<s>/resourceGroups/<g>/providers/<namespace>/<type>/<name>.",
            "Give the resource's ARM id as the Azure portal or `az resource show --query id` prints it.",
        )
    kind = _KINDS.get(match["provider"])
    if kind is None:
        raise UserError(
            "UserErrorInvalidSourceId",
            f"'{resource_id[:300]}' is a {match['provider']} resource: dpvault maps only PostgreSQL flexible "
            "servers (Microsoft.DBforPostgreSQL/flexibleServers) and storage accounts "
            "(Microsoft.Storage/storageAccounts).",
            "Map the flexible server or the storage account itself.",
        )
    if kind == "storage-account" and not _ACCOUNT.match(match["name"]):
        raise UserError(
            "UserErrorInvalidSourceId",
            f"'{match['name']}' is not a storage account name (3-24 lower-case letters and digits).",
            "Give the storage account's ARM id.",
        )
    return SourceId(key, kind, match["sub"], match["name"])


def check_value(kind: Kind, value: str) -> None:
    """UserError when ``value`` cannot reach a source of ``kind``; the message never quotes it."""
    if kind == "postgres-flexible-server":
        from dpvault.engines.postgres import connstr

        connstr.parse(value)
        return
    fields = storage_fields(value)
    if fields.get("usedevelopmentstorage", "").lower() == "true":
        return
    if not fields.get("accountname") or not fields.get("accountkey"):
        raise UserError(
            "UserErrorInvalidConnectionString",
            "The value is not an Azure Storage connection string: it needs AccountName and AccountKey "
            "(or UseDevelopmentStorage=true for Azurite).",
            "Copy the storage account's connection string (az storage account show-connection-string).",
        )


def not_mapped(resource_id: str) -> UserError:
    return UserError(
        "UserErrorDatasourceNotMapped",
        f"dpvault does not know how to reach '{resource_id[:300]}': no source mapping exists for it in "
        "this tenant (dpvault sources set <id> makes one).",
        f"Run `dpvault sources set {resource_id[:300]}` with its connection string on standard input.",
    )


class Sources:
    """Lookups of source mappings for the tenant that owns a subscription."""

    def __init__(self, credentials: Credentials, local: LocalSecretStore | None) -> None:
        self.credentials = credentials
        self.local = local

    async def source(self, resource_id: str, subscription: str) -> str:
        """The connection string mapped to ``resource_id`` for ``subscription``'s tenant, or
        UserError ``UserErrorDatasourceNotMapped``."""
        sid = parse_id(resource_id)
        tenant = await self.credentials.tenant_of(subscription)
        value = await self.local.get_source(sid.key, tenant) if self.local else None
        if value is None:
            raise not_mapped(resource_id.strip().rstrip("/"))
        return value

    async def storage_account(self, account: str, subscription: str) -> str:
        """The mapping of the storage account named ``account`` (a blob URL names no subscription):
        the one in ``subscription`` if mapped, else the tenant's only one of that name."""
        tenant = await self.credentials.tenant_of(subscription)
        found: list[SourceId] = []
        for _, uri in await self.local.list(tenant, sources=True) if self.local else []:
            try:
                sid = parse_id(uri)
            except UserError:
                continue
            if sid.kind == "storage-account" and sid.name == account.lower():
                found.append(sid)
        mine = [sid for sid in found if sid.subscription == subscription.lower()]
        chosen = mine or found
        if not chosen:
            raise not_mapped(
                f"/subscriptions/{subscription}/resourceGroups/<group>/providers/Microsoft.Storage/"
                f"storageAccounts/{account}"
            )
        # Storage account names are global: several mappings of one name (other resource groups or
        # subscriptions) are one account unless they disagree on how to reach it.
        values = (
            {v for sid in chosen if (v := await self.local.get_source(sid.key, tenant)) is not None}
            if self.local
            else set()
        )
        if not values:  # deleted meanwhile
            raise not_mapped(chosen[0].key)
        if len(values) > 1:
            where = "the backup instance's subscription" if mine else "several subscriptions of this tenant"
            raise UserError(
                "UserErrorDatasourceNotMapped",
                f"Storage account '{account}' is mapped more than once in {where}, to different connection "
                "strings: the URL does not say which mapping to use.",
                "Give targetDetails.targetResourceArmId of the container instead of its URL, or delete the "
                "stale mapping (dpvault sources delete <id>).",
            )
        return values.pop()

    async def params(self, bi: BackupInstance, subscription: str, engine: Engine) -> Params:
        """An instance's connection parameters: its credentials' secret, or -- for an engine whose
        datasources are named by ARM id only (a flexible server) and an instance without
        credentials -- the source mapping of ``dataSourceInfo.resourceID``."""
        if getattr(engine, "uses_source_mapping", False) and bi.datasourceAuthCredentials is None:
            params = engine.parse_secret(await self.source(bi.dataSourceInfo.resourceID, subscription))
        else:
            params = await self.credentials.params(bi.datasourceAuthCredentials, subscription, engine)
        configured = getattr(engine, "instance_params", None)  # e.g. the containers a blob backup lists
        return {**params, **configured(bi)} if configured is not None else params

    async def target_params(self, target: dict[str, object], subscription: str, engine: Engine) -> Params:
        """A restore target's connection parameters for an engine whose datasources are named by ARM
        id: the source mapping of the target's ``datasourceInfo.resourceID``."""
        info = target.get("datasourceInfo")
        resource_id = str(info.get("resourceID") or "") if isinstance(info, dict) else ""
        return engine.parse_secret(await self.source(resource_id, subscription))

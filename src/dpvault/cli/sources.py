"""``dpvault sources``: map ARM resource ids (flexible servers, storage accounts) to connection strings.

Azure reaches these with the vault's managed identity; dpvault needs to be told where they are and
how to log in. Values are stored encrypted and tenant-scoped in the local secret store, never echoed.
"""

from __future__ import annotations

from typing import Annotated

import typer

from dpvault.cli.common import DEFAULT_DATA_DIR, DatabaseUrl, DataDir, app, err
from dpvault.cli.secrets import SecretTenant, _with_secrets
from dpvault.settings import Settings

sources_app = typer.Typer(
    no_args_is_help=True,
    help="Source mappings: how dpvault reaches a flexible server or storage account named by ARM id.",
)
app.add_typer(sources_app, name="sources")
ResourceId = Annotated[
    str,
    typer.Argument(
        help="The resource's ARM id, e.g. /subscriptions/<s>/resourceGroups/<g>/providers/"
        "Microsoft.DBforPostgreSQL/flexibleServers/<name>"
    ),
]


def _parsed(resource_id: str) -> str:
    """The normalised id, or exit 2 with what is wrong."""
    from dpvault.cli.startup import fail
    from dpvault.errors import UserError
    from dpvault.protection.sources import parse_id

    try:
        return parse_id(resource_id).key
    except UserError as exc:
        fail(exc.message, 2)


@sources_app.command("set")
def sources_set(
    resource_id: ResourceId,
    tenant: SecretTenant = Settings.tenant_id,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    database_url: DatabaseUrl = None,
) -> None:
    """Map a resource to a connection string read from standard input: libpq or ADO.NET for a
    flexible server, an Azure Storage connection string for a storage account. Only backup
    instances in subscriptions of ``--tenant`` can use it."""
    import sys
    import time

    from dpvault.cli.startup import fail
    from dpvault.errors import UserError
    from dpvault.protection.sources import check_value, parse_id

    key = _parsed(resource_id)
    value = sys.stdin.read().rstrip("\r\n")
    if not value:
        fail("no value on standard input (pipe the connection string in)", 2)
    try:
        check_value(parse_id(key).kind, value)
    except UserError as exc:
        fail(exc.message, 2)
    _with_secrets(data_dir, database_url, lambda s: s.set(key, value, tenant=tenant, now=time.time()))
    err.print(f"mapped {key} for tenant {tenant}", highlight=False)


@sources_app.command("list")
def sources_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's.")] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    database_url: DatabaseUrl = None,
) -> None:
    """List the mapped resource ids and their tenants (never the values)."""
    for owner, key in _with_secrets(data_dir, database_url, lambda s: s.list(tenant, sources=True)):
        typer.echo(f"{key}  tenant={owner}")


@sources_app.command("delete")
def sources_delete(
    resource_id: ResourceId,
    tenant: SecretTenant = Settings.tenant_id,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    database_url: DatabaseUrl = None,
) -> None:
    """Remove a mapping."""
    key = _parsed(resource_id)
    if not _with_secrets(data_dir, database_url, lambda s: s.delete(key, tenant=tenant)):
        err.print(f"no source mapping {key} for tenant {tenant}", highlight=False)
        raise typer.Exit(1)

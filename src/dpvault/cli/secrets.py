"""``dpvault secrets``: the local secret store (the connection strings backup instances name)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from dpvault.cli.common import DEFAULT_DATA_DIR, DatabaseUrl, DataDir, app, err, with_store
from dpvault.settings import Settings

T = TypeVar("T")

secrets_app = typer.Typer(
    no_args_is_help=True, help="The local secret store (database credentials for backups)."
)
app.add_typer(secrets_app, name="secrets")
SecretTenant = Annotated[
    str,
    typer.Option(
        help="The tenant (tid) whose backup instances may use the secret; default: the server's own."
    ),
]


def _with_secrets(data_dir: Path, database_url: str | None, work: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``work(local secret store)`` against the data dir's (or URL's) database."""
    from dpvault.secrets.local import LocalSecretStore, load_key

    identity_dir = Settings(data_dir=data_dir.resolve()).identity_dir
    return with_store(
        data_dir, database_url, lambda store: work(LocalSecretStore(store, load_key(identity_dir)))
    )


@secrets_app.command("set")
def secrets_set(
    uri: Annotated[
        str,
        typer.Argument(
            help="The secret URI backup instances name, e.g. https://myvault.vault.azure.net/secrets/pg"
        ),
    ],
    tenant: SecretTenant = Settings.tenant_id,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    database_url: DatabaseUrl = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Store it even if the URI is not a Key Vault secret URI or the value no connection string.",
        ),
    ] = False,
) -> None:
    """Store a secret; the value (a connection string) is read from standard input. Only backup
    instances in subscriptions of ``--tenant`` can use it."""
    import sys
    import time

    from dpvault.cli.startup import fail

    if _is_source(uri):
        fail(f"{uri!r} is an ARM resource id: map it with `dpvault sources set`", 2)
    value = sys.stdin.read().rstrip("\r\n")
    if not value:
        fail("no value on standard input (pipe the connection string in)", 2)
    if not force:
        problem = _uri_problem(uri) or _value_problem(value)
        if problem:
            fail(f"{problem} (--force stores it anyway)", 2)
    _with_secrets(data_dir, database_url, lambda s: s.set(uri, value, tenant=tenant, now=time.time()))
    err.print(f"stored {uri} for tenant {tenant}", highlight=False)


# Key Vault: https://<vault>.vault.azure.net/secrets/<name>[/<version>] (or a sovereign cloud's suffix);
# vault names are 3-24 letters, digits and dashes; secret names 1-127 letters, digits and dashes.
_KEY_VAULT_HOSTS = (
    ".vault.azure.net",
    ".vault.azure.cn",
    ".vault.usgovcloudapi.net",
    ".vault.microsoftazure.de",
)


def _is_source(uri: str) -> bool:
    """ARM ids are source mappings' keys (``dpvault sources``), kept out of the secrets' view."""
    from dpvault.secrets.local import is_source_key

    return is_source_key(uri)


def _uri_problem(uri: str) -> str | None:
    import re
    from urllib.parse import urlsplit

    parts = urlsplit(uri.strip())
    host = (parts.hostname or "").lower()
    segments = parts.path.strip("/").split("/")
    ok = (
        parts.scheme == "https"
        and host.endswith(_KEY_VAULT_HOSTS)
        and re.fullmatch(r"[a-z0-9-]{3,24}", host.split(".", 1)[0]) is not None
        and len(segments) in (2, 3)
        and segments[0].lower() == "secrets"
        and re.fullmatch(r"[0-9A-Za-z-]{1,127}", segments[1]) is not None
        and (len(segments) == 2 or re.fullmatch(r"[0-9a-fA-F]{32}", segments[2]) is not None)
        and not parts.query
        and not parts.fragment
    )
    if ok:
        return None
    return (
        f"{uri!r} is not a Key Vault secret URI (https://<vault>.vault.azure.net/secrets/<name>, "
        "names of letters, digits and dashes)"
    )


def _value_problem(value: str) -> str | None:
    from dpvault.engines.postgres import connstr
    from dpvault.errors import UserError

    try:
        connstr.parse(value)
    except UserError as exc:
        return f"the value is not a usable connection string: {exc.message}"
    return None


@secrets_app.command("list")
def secrets_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's.")] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    database_url: DatabaseUrl = None,
) -> None:
    """List the URIs in the local secret store and their tenants (never the values)."""
    for owner, uri in _with_secrets(data_dir, database_url, lambda s: s.list(tenant)):
        typer.echo(f"{uri}  tenant={owner}")


@secrets_app.command("delete")
def secrets_delete(
    uri: str,
    tenant: SecretTenant = Settings.tenant_id,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    database_url: DatabaseUrl = None,
) -> None:
    """Remove a secret."""
    if _is_source(uri):
        err.print(f"no secret {uri} (an ARM resource id: see `dpvault sources delete`)", highlight=False)
        raise typer.Exit(1)
    if not _with_secrets(data_dir, database_url, lambda s: s.delete(uri, tenant=tenant)):
        err.print(f"no secret {uri}", highlight=False)
        raise typer.Exit(1)

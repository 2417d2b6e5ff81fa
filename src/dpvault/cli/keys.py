"""``dpvault keys``: key-encryption keys stored for Key Vault key URIs -- the emulation of a
customer-managed key (a vault's ``securitySettings.encryptionSettings.keyVaultProperties.keyUri``).

A stored key wraps the data key of every vault that names its URI (docs/design/vault-format.md).
Deleting or losing it makes those vaults unreadable: keep a copy (``keys set --generate`` prints the
new key once, on standard output).
"""

from __future__ import annotations

import base64
import os
import re
import sys
import time
from typing import Annotated

import typer

from dpvault.cli.common import DEFAULT_DATA_DIR, DatabaseUrl, DataDir, app, err, with_store
from dpvault.settings import Settings

keys_app = typer.Typer(
    no_args_is_help=True, help="Key-encryption keys for vaults' customer-managed keys (keyUri)."
)
app.add_typer(keys_app, name="keys")
KeyTenant = Annotated[
    str, typer.Option(help="The tenant (tid) whose vaults may use the key; default: the server's own.")
]
_KEY_URI = re.compile(
    r"^https://[A-Za-z0-9-]{3,24}\.vault\.[A-Za-z0-9.-]+/keys/[A-Za-z0-9-]{1,127}(/[A-Za-z0-9]{1,64})?/?$"
)


def _store(data_dir, database_url, work):  # type: ignore[no-untyped-def]
    from dpvault.secrets.local import LocalSecretStore, load_key

    identity_dir = Settings(data_dir=data_dir.resolve()).identity_dir
    return with_store(
        data_dir, database_url, lambda store: work(LocalSecretStore(store, load_key(identity_dir)))
    )


@keys_app.command("set")
def keys_set(
    uri: Annotated[
        str, typer.Argument(help="The key URI a vault names, e.g. https://myvault.vault.azure.net/keys/cmk")
    ],
    generate: Annotated[
        bool, typer.Option("--generate", help="Make a new random key instead of reading one.")
    ] = False,
    tenant: KeyTenant = Settings.tenant_id,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    database_url: DatabaseUrl = None,
) -> None:
    """Store a 256-bit key for URI: base64 on standard input, or --generate."""
    if not _KEY_URI.match(uri.strip()):
        raise typer.BadParameter(
            "not a Key Vault key URI (https://<vault>.vault.azure.net/keys/<name>[/<version>])"
        )
    if generate:
        value = base64.b64encode(os.urandom(32)).decode()
        typer.echo(value)  # shown once: the vaults it wraps are unreadable without it
    else:
        text = sys.stdin.read().strip()
        try:
            raw = base64.b64decode(text, validate=True)
        except ValueError:
            raise typer.BadParameter("standard input is not base64") from None
        if len(raw) != 32:
            raise typer.BadParameter(f"the key must be 32 bytes (256 bits); got {len(raw)}")
        value = text
    _store(data_dir, database_url, lambda s: s.set(uri, value, tenant=tenant, now=time.time()))
    err.print(f"stored key {uri} for tenant {tenant}", highlight=False)


@keys_app.command("list")
def keys_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's.")] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    database_url: DatabaseUrl = None,
) -> None:
    """List the stored key URIs and their tenants (never the keys)."""
    for owner, uri in _store(data_dir, database_url, lambda s: s.list(tenant)):
        if "/keys/" in uri.lower():
            typer.echo(f"{uri}  tenant={owner}")


@keys_app.command("delete")
def keys_delete(
    uri: str,
    tenant: KeyTenant = Settings.tenant_id,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    database_url: DatabaseUrl = None,
) -> None:
    """Remove a stored key: the vaults whose data key it wraps become unreadable."""
    if not _store(data_dir, database_url, lambda s: s.delete(uri, tenant=tenant)):
        err.print(f"no key {uri}", highlight=False)
        raise typer.Exit(1)

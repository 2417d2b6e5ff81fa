"""``dpvault token``: a bearer token the server accepts (signed by the data dir's key)."""

from __future__ import annotations

from typing import Annotated

import typer

from dpvault.cli.common import DEFAULT_DATA_DIR, DataDir, app
from dpvault.settings import Settings


@app.command()
def token(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    tenant: Annotated[str, typer.Option(help="Tenant id (tid) the token is for.")] = Settings.tenant_id,
    name: Annotated[str, typer.Option(help="Who the token names (systemData.createdBy).")] = "dpvault-user",
    application: Annotated[
        bool, typer.Option("--application", help="An app-only token (createdByType Application).")
    ] = False,
    lifetime: Annotated[int, typer.Option(help="Seconds until the token expires.")] = 24 * 3600,
) -> None:
    """Print a bearer token the server in DATA_DIR accepts."""
    from dpvault.cli.startup import fail
    from dpvault.identity import keys, tokens

    identity = data_dir.resolve() / "identity"
    if not (identity / keys.KEY_FILE).is_file():
        # Never a new key: a token signed by it would only be refused (a typo in --data-dir).
        fail(
            f"no signing key in {identity}: {data_dir} is not the data directory of a dpvault server "
            "(`dpvault serve --data-dir DIR` creates one); pass the --data-dir the server runs with",
            2,
        )
    key = keys.load_or_create(identity)
    typer.echo(tokens.issue(key, tenant=tenant, name=name, application=application, lifetime=lifetime))

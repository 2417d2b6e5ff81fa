"""The ``dpvault`` command: ``serve`` runs the service, ``token`` prints a bearer token it accepts."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from dpvault.settings import DEFAULT_API_VERSIONS, SETTINGS_ENV, Settings

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="dpvault: an Azure-compatible Data Protection service."
)
err = Console(stderr=True, soft_wrap=True)

DEFAULT_DATA_DIR = Path(os.environ.get("DPVAULT_DATA_DIR", ".dpvault"))
DataDir = Annotated[
    Path, typer.Option("--data-dir", envvar="DPVAULT_DATA_DIR", help="Where state, keys and backups live.")
]


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8443,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    database_url: Annotated[
        str | None,
        typer.Option(
            envvar="DPVAULT_DATABASE_URL",
            help="sqlite:///path or postgresql://user:pw@host/db (default: SQLite in the data dir).",
        ),
    ] = None,
    tls_cert: Annotated[
        Path | None, typer.Option(help="Server certificate (PEM); default: generated, signed by a local CA.")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="Private key for --tls-cert.")] = None,
    no_tls: Annotated[
        bool, typer.Option("--no-tls", help="Serve plain HTTP (Azure SDKs then need enforce_https=False).")
    ] = False,
    retry_after: Annotated[
        int, typer.Option(help="Retry-After seconds sent with long-running operations.")
    ] = 1,
    auto_create_resource_groups: Annotated[
        bool,
        typer.Option(
            "--auto-create-resource-groups/--no-auto-create-resource-groups",
            help="Create a missing resource group on first write.",
        ),
    ] = True,
    api_version: Annotated[
        list[str] | None,
        typer.Option(
            "--api-version",
            help="Accepted api-version (repeat); default: 2023-01-01 and newer stable versions.",
        ),
    ] = None,
    location: Annotated[str, typer.Option(help="Azure location reported for the service.")] = "westus",
    provisioning_delay: Annotated[
        float, typer.Option(help="Seconds each protection configuration takes (imitate Azure's timing).")
    ] = 0.0,
    lease_seconds: Annotated[
        float, typer.Option(help="Job lease; a dead worker's job is re-run after it.")
    ] = 15.0,
    public_url: Annotated[
        str | None, typer.Option(help="Base URL clients reach this server at (default: the Host they used).")
    ] = None,
    clock: Annotated[
        str, typer.Option(help="real, or manual: time moves only by POST /dpvault/clock/advance (for tests).")
    ] = "real",
    pg_dump: Annotated[
        str | None, typer.Option(help="pg_dump to use (pg_restore beside it); default: newest found.")
    ] = None,
    vault_store: Annotated[
        Path | None, typer.Option(help="Directory for backup data (default: <data-dir>/vault).")
    ] = None,
    key_vault: Annotated[
        bool,
        typer.Option(
            "--key-vault", help="Also resolve secrets from Azure Key Vault (DefaultAzureCredential)."
        ),
    ] = False,
    restore_drills: Annotated[
        bool,
        typer.Option(
            "--restore-drills", help="Drill-restore every backup (else opt in per instance or vault by tag)."
        ),
    ] = False,
    restore_root: Annotated[
        list[Path] | None,
        typer.Option(
            "--restore-root",
            help="Directory restore-as-files may write into (repeat; default <data-dir>/restores).",
        ),
    ] = None,
    builtin_issuer: Annotated[
        bool,
        typer.Option(
            "--builtin-issuer/--no-builtin-issuer",
            help="Serve the token endpoint and accept `dpvault token` tokens.",
        ),
    ] = True,
    trust_issuer: Annotated[
        list[str] | None,
        typer.Option(
            "--trust-issuer",
            envvar="DPVAULT_TRUST_ISSUER",
            help="Accept tokens of this OpenID issuer (repeat).",
        ),
    ] = None,
    identity_config: Annotated[
        Path | None,
        typer.Option(help="JSON file of trusted issuers (issuer, discovery or jwks, audiences, tenant)."),
    ] = None,
    workers: Annotated[
        int, typer.Option(help="API processes (each also runs background work); share a database.")
    ] = 1,
    background: Annotated[
        bool,
        typer.Option(
            "--background/--no-background",
            help="Run jobs, schedules and retention here (else only `dpvault worker`s do).",
        ),
    ] = True,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    log_json: Annotated[
        bool, typer.Option("--log-json", help="Log JSON lines instead of key=value.")
    ] = False,
    access_log: Annotated[
        bool, typer.Option("--access-log/--no-access-log", help="Log one line per request.")
    ] = True,
) -> None:
    """Start the service."""
    import uvicorn

    from dpvault import logging as dplogging
    from dpvault.app import create_app
    from dpvault.identity import tls

    if (tls_cert is None) != (tls_key is None):
        raise typer.BadParameter("--tls-cert and --tls-key go together")
    if clock not in ("real", "manual"):
        raise typer.BadParameter("--clock is real or manual")
    dplogging.configure(level=log_level, json=log_json)
    os.environ["DPVAULT_LOG_LEVEL"] = log_level
    os.environ["DPVAULT_LOG_JSON"] = "1" if log_json else "0"
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    settings = Settings(
        data_dir=data_dir,
        database_url=database_url,
        host=host,
        port=port,
        tls=not no_tls,
        tls_cert=tls_cert,
        tls_key=tls_key,
        retry_after=retry_after,
        auto_create_resource_groups=auto_create_resource_groups,
        api_versions=tuple(api_version) if api_version else DEFAULT_API_VERSIONS,
        default_location=location.replace(" ", "").lower(),
        provisioning_delay=provisioning_delay,
        lease_seconds=lease_seconds,
        public_url=public_url.rstrip("/") if public_url else None,
        clock=clock,
        pg_dump=pg_dump,
        vault_store=vault_store.resolve() if vault_store else None,
        key_vault=key_vault,
        restore_drills=restore_drills,
        restore_roots=tuple(p.resolve() for p in restore_root or ()),
        builtin_issuer=builtin_issuer,
        run_worker=background,
        trust_issuers=tuple(trust_issuer or ()),
        identity_config=identity_config.resolve() if identity_config else None,
        access_log=access_log,
    )
    ssl: dict[str, str] = {}
    ca_line = ""
    if settings.tls:
        if tls_cert and tls_key:
            ssl = {"ssl_certfile": str(tls_cert), "ssl_keyfile": str(tls_key)}
        else:
            extra = () if host in ("0.0.0.0", "::", "") else (host,)  # noqa: S104 - comparing, not binding
            files = tls.ensure(settings.tls_dir, extra)
            ssl = {"ssl_certfile": str(files.cert), "ssl_keyfile": str(files.key)}
            ca_line = f"CA certificate: {files.ca}  (export REQUESTS_CA_BUNDLE={files.ca})"
    scheme = "https" if settings.tls else "http"
    shown_host = f"[{host}]" if ":" in host else host
    err.print(
        f"dpvault listening on {settings.public_url or f'{scheme}://{shown_host}:{port}'}", highlight=False
    )
    if ca_line:
        err.print(ca_line, highlight=False)
    err.print(f"Bearer token:   dpvault token --data-dir {data_dir}", highlight=False)
    # Migrate once here, so several API processes never race to migrate one database.
    from dpvault.store.engines import migrate

    migrate(settings.resolved_database_url)
    settings = dataclasses.replace(settings, migrated=True)
    if workers > 1:
        # uvicorn's process manager imports the app in each process: the settings travel in the environment.
        os.environ[SETTINGS_ENV] = settings.to_json()
        target: object = "dpvault.app:from_environment"
    else:
        target = create_app(settings)
    uvicorn.run(
        target,  # type: ignore[arg-type]
        factory=workers > 1,
        workers=workers if workers > 1 else None,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        server_header=False,
        log_level="warning",
        timeout_graceful_shutdown=5,
        **ssl,  # type: ignore[arg-type]
    )


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
    from dpvault.identity import keys, tokens

    key = keys.load_or_create(data_dir.resolve() / "identity")
    typer.echo(tokens.issue(key, tenant=tenant, name=name, application=application, lifetime=lifetime))


@app.command()
def worker(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    database_url: Annotated[
        str | None, typer.Option(envvar="DPVAULT_DATABASE_URL", help="As for serve.")
    ] = None,
    clock: Annotated[str, typer.Option(help="As for serve: real or manual.")] = "real",
    pg_dump: Annotated[str | None, typer.Option(help="As for serve.")] = None,
    vault_store: Annotated[
        Path | None, typer.Option(help="As for serve (must be the same directory).")
    ] = None,
    lease_seconds: Annotated[
        float, typer.Option(help="Job lease; a dead worker's job is re-run after it.")
    ] = 15.0,
    provisioning_delay: Annotated[float, typer.Option(help="As for serve.")] = 0.0,
    key_vault: Annotated[bool, typer.Option("--key-vault", help="As for serve.")] = False,
    restore_drills: Annotated[bool, typer.Option("--restore-drills", help="As for serve.")] = False,
    restore_root: Annotated[list[Path] | None, typer.Option("--restore-root", help="As for serve.")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Run background work only (jobs, schedules, retention) against a shared database."""
    import asyncio
    import signal

    from dpvault import logging as dplogging
    from dpvault.runtime import Runtime

    dplogging.configure(level=log_level)
    settings = Settings(
        data_dir=data_dir.resolve(), database_url=database_url, clock=clock, pg_dump=pg_dump,
        vault_store=vault_store.resolve() if vault_store else None, lease_seconds=lease_seconds, key_vault=key_vault,
        provisioning_delay=provisioning_delay,
        restore_drills=restore_drills, restore_roots=tuple(p.resolve() for p in restore_root or ()),
    )  # fmt: skip

    async def run() -> None:
        runtime = Runtime(settings)
        await runtime.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        err.print("dpvault worker running", highlight=False)
        await stop.wait()
        await runtime.stop()

    asyncio.run(run())


@app.command()
def verify(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    database_url: Annotated[
        str | None, typer.Option(envvar="DPVAULT_DATABASE_URL", help="As for serve.")
    ] = None,
    vault_store: Annotated[Path | None, typer.Option(help="As for serve.")] = None,
    vault: Annotated[str | None, typer.Option("--vault", help="Only this vault (name).")] = None,
    instance: Annotated[
        str | None, typer.Option("--instance", help="Only this backup instance (name).")
    ] = None,
) -> None:
    """Check every recovery point's bytes against its SHA-256; exit 1 if any is corrupt or missing."""
    import asyncio

    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
    from rich.table import Table

    from dpvault.datastores import LocalDatastore
    from dpvault.store import RecoveryPointRow, Store

    settings = Settings(
        data_dir=data_dir.resolve(),
        database_url=database_url,
        vault_store=vault_store.resolve() if vault_store else None,
    )

    async def load() -> list[RecoveryPointRow]:
        store = await Store.open(settings.resolved_database_url)
        try:
            async with store.read() as tx:
                return await tx.all_recovery_points()
        finally:
            await store.close()

    def named(key: str, collection: str, name: str | None) -> bool:
        if name is None:
            return True
        parts = key.split("/")
        return collection in parts and parts[parts.index(collection) + 1] == name.lower()

    points = [
        rp
        for rp in asyncio.run(load())
        if named(rp.instance_key, "backupvaults", vault)
        and named(rp.instance_key, "backupinstances", instance)
    ]
    datastore = LocalDatastore(settings.vault_store_dir)
    bad: list[tuple[str, str, str]] = []
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task("verifying", total=sum(rp.size for rp in points))
        for rp in points:
            name = rp.instance_key.rsplit("/", 1)[-1]
            try:
                if datastore.hash(rp.object_key) != (rp.size, rp.sha256):
                    bad.append((rp.id, name, "corrupt: SHA-256 differs"))
            except FileNotFoundError:
                bad.append((rp.id, name, "missing"))
            progress.advance(task, rp.size)
    console = Console()
    if bad and console.is_terminal:
        table = Table(title="recovery points that fail verification")
        for column in ("recovery point", "backup instance", "problem"):
            table.add_column(column, no_wrap=True)
        for row in bad:
            table.add_row(*row)
        console.print(table)
    elif bad:
        for rp_id, name, problem in bad:
            typer.echo(f"BAD {rp_id} instance={name} {problem}")
    typer.echo(f"{len(points)} recovery points checked: {len(points) - len(bad)} ok, {len(bad)} bad")
    if bad:
        raise typer.Exit(1)


secrets_app = typer.Typer(
    no_args_is_help=True, help="The local secret store (database credentials for backups)."
)
app.add_typer(secrets_app, name="secrets")
DatabaseUrl = Annotated[str | None, typer.Option(envvar="DPVAULT_DATABASE_URL", help="As for serve.")]
SecretTenant = Annotated[
    str,
    typer.Option(
        help="The tenant (tid) whose backup instances may use the secret; default: the server's own."
    ),
]


def _with_secrets(data_dir: Path, database_url: str | None, work):  # type: ignore[no-untyped-def]
    """Run ``work(local secret store)`` against the data dir's (or URL's) database."""
    from dpvault.secrets.local import LocalSecretStore, load_key

    identity_dir = Settings(data_dir=data_dir.resolve()).identity_dir
    return _with_store(
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
) -> None:
    """Store a secret; the value (a connection string) is read from standard input. Only backup
    instances in subscriptions of ``--tenant`` can use it."""
    import sys
    import time

    value = sys.stdin.read().rstrip("\r\n")
    if not value:
        raise typer.BadParameter("no value on standard input")
    _with_secrets(data_dir, database_url, lambda s: s.set(uri, value, tenant=tenant, now=time.time()))
    err.print(f"stored {uri} for tenant {tenant}", highlight=False)


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
    if not _with_secrets(data_dir, database_url, lambda s: s.delete(uri, tenant=tenant)):
        err.print(f"no secret {uri}", highlight=False)
        raise typer.Exit(1)


clients_app = typer.Typer(
    no_args_is_help=True, help="OAuth clients of the built-in issuer (client credentials)."
)
app.add_typer(clients_app, name="clients")
subscriptions_app = typer.Typer(no_args_is_help=True, help="Subscriptions and the tenant that owns each.")
app.add_typer(subscriptions_app, name="subscriptions")


def _with_store(data_dir: Path, database_url: str | None, work):  # type: ignore[no-untyped-def]
    import asyncio

    from dpvault.store import Store

    settings = Settings(data_dir=data_dir.resolve(), database_url=database_url)
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    async def run():  # type: ignore[no-untyped-def]
        store = await Store.open(settings.resolved_database_url)
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())


@clients_app.command("add")
def clients_add(
    name: Annotated[str, typer.Argument(help="A name for the client (shown in systemData and jobs).")],
    tenant: Annotated[str, typer.Option(help="The tenant its tokens are for (tid).")] = Settings.tenant_id,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    database_url: DatabaseUrl = None,
) -> None:
    """Register a client; prints its id and secret (the secret is shown only this once)."""
    import time

    from dpvault.identity.clients import ClientRegistry

    client, secret = _with_store(
        data_dir, database_url, lambda store: ClientRegistry(store).add(name, tenant, now=time.time())
    )
    typer.echo(f"client_id={client.client_id}")
    typer.echo(f"client_secret={secret}")
    typer.echo(f"tenant_id={client.tenant}")


@clients_app.command("list")
def clients_list(data_dir: DataDir = DEFAULT_DATA_DIR, database_url: DatabaseUrl = None) -> None:
    """List registered clients (never their secrets)."""
    from dpvault.identity.clients import ClientRegistry

    for client in _with_store(data_dir, database_url, lambda store: ClientRegistry(store).list()):
        typer.echo(f"{client.client_id}  tenant={client.tenant}  {client.name}")


@clients_app.command("delete")
def clients_delete(
    client_id: str, data_dir: DataDir = DEFAULT_DATA_DIR, database_url: DatabaseUrl = None
) -> None:
    """Remove a client: its secret stops working (tokens already issued last until they expire)."""
    from dpvault.identity.clients import ClientRegistry

    if not _with_store(data_dir, database_url, lambda store: ClientRegistry(store).delete(client_id)):
        err.print(f"no client {client_id}", highlight=False)
        raise typer.Exit(1)


@subscriptions_app.command("add")
def subscriptions_add(
    subscription_id: str,
    tenant: Annotated[str, typer.Option(help="The tenant that owns it.")],
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    data_dir: DataDir = DEFAULT_DATA_DIR,
    database_url: DatabaseUrl = None,
) -> None:
    """Register a subscription for a tenant (before anyone uses it)."""
    import time

    from dpvault import errors
    from dpvault.arm import ids

    try:
        ids.check_subscription(subscription_id)
    except errors.ArmError as exc:
        raise typer.BadParameter(exc.message) from None

    async def work(store):  # type: ignore[no-untyped-def]
        return await store.transact(
            lambda tx: tx.claim_subscription(
                subscription_id.lower(), tenant, now=time.time(), display_name=name
            )
        )

    row = _with_store(data_dir, database_url, work)
    if row["tenant"].lower() != tenant.lower():
        err.print(
            f"subscription {subscription_id} already belongs to tenant {row['tenant']}", highlight=False
        )
        raise typer.Exit(1)
    typer.echo(f"{row['id']}  tenant={row['tenant']}  {row['display_name']}")


@subscriptions_app.command("list")
def subscriptions_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's.")] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    database_url: DatabaseUrl = None,
) -> None:
    """List subscriptions and their tenants."""

    async def work(store):  # type: ignore[no-untyped-def]
        async with store.read() as tx:
            if tenant:
                return await tx.subscriptions_of(tenant)
            return [r for t in await tx.tenants() for r in await tx.subscriptions_of(t)]

    for row in _with_store(data_dir, database_url, work):
        typer.echo(f"{row['id']}  tenant={row['tenant']}  {row['display_name']}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()

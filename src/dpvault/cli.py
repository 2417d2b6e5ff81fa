"""The ``dpvault`` command: ``serve`` runs the service, ``token`` prints a bearer token it accepts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from dpvault.settings import DEFAULT_API_VERSIONS, Settings

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="dpvault: an Azure-compatible Data Protection service."
)
err = Console(stderr=True)

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
    dplogging.configure(level=log_level, json=log_json, access_log=access_log)
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
    uvicorn.run(
        create_app(settings),
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()

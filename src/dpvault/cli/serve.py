"""``dpvault serve``: the API and (unless --no-background) the background work, in one or more processes."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import shlex
from pathlib import Path
from typing import Annotated

import typer

from dpvault.cli.common import DEFAULT_DATA_DIR, DataDir, app, err
from dpvault.settings import BODY_RATE_GRACE, DEFAULT_API_VERSIONS, SETTINGS_ENV, HttpLimits, Settings

SERVE_URL_FILE = "serve-url"  # the base URL serve last printed, for `dpvault dashboard-url`


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
            help="Accepted api-version (repeat); default: 2023-01-01 and every newer stable and preview version up to 2026-08-31-preview.",
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
        str | None,
        typer.Option(
            help="Where backup data lives: a directory or file:///abs/path (default <data-dir>/vault), "
            "azure://container[/prefix] (AZURE_STORAGE_* variables) or s3://bucket[/prefix] (AWS_* variables)."
        ),
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
    max_header_bytes: Annotated[
        int, typer.Option(help="Request line and headers together, in bytes (more: 431).", min=1024)
    ] = HttpLimits.max_head_bytes,
    max_url_bytes: Annotated[
        int, typer.Option(help="Request URL, in bytes (more: 414).", min=256)
    ] = HttpLimits.max_url_bytes,
    header_timeout: Annotated[
        float,
        typer.Option(help="Seconds for the TLS handshake and for each request's headers (408).", min=0.1),
    ] = HttpLimits.header_timeout,
    body_timeout: Annotated[
        float, typer.Option(help="Seconds a request body may pause before the request fails (400).", min=0.1)
    ] = HttpLimits.body_timeout,
    min_body_rate: Annotated[
        int,
        typer.Option(
            help=f"Bytes per second a request body must average after its first {BODY_RATE_GRACE:g} s (408).",
            min=0,
        ),
    ] = HttpLimits.min_body_rate,
    keep_alive_timeout: Annotated[
        float, typer.Option(help="Seconds an idle connection stays open between requests.", min=0.1)
    ] = HttpLimits.keep_alive_timeout,
    max_connections: Annotated[
        int, typer.Option(help="Open connections per API process (more: 503 TooManyConnections).", min=1)
    ] = HttpLimits.max_connections,
    alert_webhook: Annotated[
        list[str] | None,
        typer.Option(
            "--alert-webhook",
            help="POST every failed job here, in Azure Monitor's common alert schema (repeat).",
        ),
    ] = None,
) -> None:
    """Start the service."""
    from dpvault import logging as dplogging
    from dpvault.cli import startup

    if (tls_cert is None) != (tls_key is None):
        startup.fail("--tls-cert and --tls-key go together", 2)
    if clock not in ("real", "manual"):
        startup.fail(f"--clock is real or manual, not {clock!r}", 2)
    startup.check_port(port)
    webhooks = startup.check_webhooks(alert_webhook)
    dplogging.configure(level=log_level, json=log_json)
    os.environ["DPVAULT_LOG_LEVEL"] = log_level
    os.environ["DPVAULT_LOG_JSON"] = "1" if log_json else "0"
    data_dir = startup.prepare_data_dir(data_dir)
    startup.check_pg_dump(pg_dump)
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
        vault_store=startup.vault_store_url(vault_store),
        key_vault=key_vault,
        restore_drills=restore_drills,
        restore_roots=tuple(p.resolve() for p in restore_root or ()),
        builtin_issuer=builtin_issuer,
        run_worker=background,
        trust_issuers=tuple(trust_issuer or ()),
        identity_config=identity_config.resolve() if identity_config else None,
        access_log=access_log,
        alert_webhooks=webhooks,
    )
    # Migrate once here, so several API processes never race to migrate one database.
    startup.open_database(settings.resolved_database_url)
    startup.check_vault_store(settings)
    from dpvault.app import create_app  # after the checks: a mistake is reported before this import
    from dpvault.identity import tls
    from dpvault.server import HANDSHAKE_ENV, LimitedHttpToolsProtocol

    sock = startup.bind(host, port)
    port = sock.getsockname()[1]  # --port 0: the one the system chose
    settings = dataclasses.replace(settings, migrated=True, port=port)
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
    base = settings.public_url or f"{scheme}://{shown_host}:{port}"
    (data_dir / SERVE_URL_FILE).write_text(base + "\n")  # for `dpvault dashboard-url`
    dpvault = startup.command()
    shown_dir = shlex.quote(str(data_dir))
    err.print(f"dpvault listening on {base}", highlight=False, markup=False)
    if ca_line:
        err.print(ca_line, highlight=False, markup=False)
    err.print(f"Bearer token:   {dpvault} token --data-dir {shown_dir}", highlight=False, markup=False)
    err.print(
        f"Dashboard:      {dashboard_url(base, data_dir, settings.tenant_id)}", highlight=False, markup=False
    )
    err.print(
        f"                (one-time link; `{dpvault} dashboard-url --data-dir {shown_dir}` makes another)",
        highlight=False, markup=False,
    )  # fmt: skip
    if workers > 1:
        # uvicorn's process manager imports the app in each process: the settings travel in the environment.
        os.environ[SETTINGS_ENV] = settings.to_json()
        target: object = "dpvault.app:from_environment"
    else:
        target = create_app(settings)
    limits = HttpLimits(
        max_head_bytes=max_header_bytes,
        max_url_bytes=max_url_bytes,
        header_timeout=header_timeout,
        body_timeout=body_timeout,
        min_body_rate=min_body_rate,
        keep_alive_timeout=keep_alive_timeout,
        max_connections=_connection_cap(max_connections),
    )
    os.environ[HANDSHAKE_ENV] = str(header_timeout)  # for the loop of each API process
    startup.serve_uvicorn(
        target,
        sock,
        workers=workers,
        host=host,
        port=port,
        loop="dpvault.server:new_event_loop",
        http=functools.partial(LimitedHttpToolsProtocol, limits=limits),  # type: ignore[arg-type]
        ws="none",
        lifespan="on",
        access_log=False,
        server_header=False,
        log_level="warning",
        timeout_graceful_shutdown=5,
        timeout_keep_alive=keep_alive_timeout,  # type: ignore[arg-type]
        **ssl,  # type: ignore[arg-type]
    )


# File descriptors an API process needs besides its connections: database, logs, pools, backups.
_SPARE_FDS = 256


def _connection_cap(wanted: int) -> int:
    """Raise the soft open-files limit so ``wanted`` connections fit (Debian's default soft limit
    is 1024); if the hard limit is lower, cap the connections at what fits and say so."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + _SPARE_FDS
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    if soft != resource.RLIM_INFINITY and soft < needed:
        capped = max(1, soft - _SPARE_FDS)
        err.print(
            f"--max-connections {wanted} lowered to {capped}: the open-files limit is {soft}", highlight=False
        )
        return capped
    return wanted


def dashboard_url(base: str, data_dir: Path, tenant: str) -> str:
    """A dashboard sign-in URL with a new one-time code for ``tenant``."""
    from dpvault.dashboard.signin import issue_code

    return f"{base}/dashboard/login?code={issue_code(data_dir / 'identity', tenant)}"


@app.command("dashboard-url")
def dashboard_url_command(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    tenant: Annotated[
        str, typer.Option(help="The tenant whose subscriptions the dashboard shows.")
    ] = Settings.tenant_id,
    url: Annotated[
        str | None,
        typer.Option(
            "--url", help="The server's base URL (default: the one serve last printed for this data dir)."
        ),
    ] = None,
) -> None:
    """Print a dashboard sign-in URL with a new one-time code (valid 24 hours, for one sign-in)."""
    from dpvault.cli import startup

    data_dir = data_dir.resolve()
    if not (data_dir / "identity" / "signing-key.pem").is_file():
        startup.fail(
            f"{data_dir} is not the data directory of a dpvault server (no identity/signing-key.pem); "
            "pass the --data-dir the server runs with",
            2,
        )
    if url is None:
        recorded = data_dir / SERVE_URL_FILE
        url = recorded.read_text().strip() if recorded.is_file() else "https://127.0.0.1:8443"
    typer.echo(dashboard_url(url.rstrip("/"), data_dir, tenant))

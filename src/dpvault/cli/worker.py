"""``dpvault worker``: background work only (jobs, schedules, retention) against a shared database."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dpvault.cli.common import DEFAULT_DATA_DIR, DataDir, app, err
from dpvault.settings import Settings


@app.command()
def worker(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    database_url: Annotated[
        str | None, typer.Option(envvar="DPVAULT_DATABASE_URL", help="As for serve.")
    ] = None,
    clock: Annotated[str, typer.Option(help="As for serve: real or manual.")] = "real",
    pg_dump: Annotated[str | None, typer.Option(help="As for serve.")] = None,
    vault_store: Annotated[
        str | None, typer.Option(help="As for serve (must be the same store as the API processes').")
    ] = None,
    lease_seconds: Annotated[
        float, typer.Option(help="Job lease; a dead worker's job is re-run after it.")
    ] = 15.0,
    provisioning_delay: Annotated[float, typer.Option(help="As for serve.")] = 0.0,
    key_vault: Annotated[bool, typer.Option("--key-vault", help="As for serve.")] = False,
    restore_drills: Annotated[bool, typer.Option("--restore-drills", help="As for serve.")] = False,
    restore_root: Annotated[list[Path] | None, typer.Option("--restore-root", help="As for serve.")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    log_json: Annotated[bool, typer.Option("--log-json", help="As for serve.")] = False,
    alert_webhook: Annotated[
        list[str] | None, typer.Option("--alert-webhook", help="As for serve (repeat).")
    ] = None,
) -> None:
    """Run background work only (jobs, schedules, retention) against a shared database."""
    import asyncio
    import signal

    from dpvault import logging as dplogging
    from dpvault.cli import startup
    from dpvault.runtime import Runtime

    webhooks = startup.check_webhooks(alert_webhook)
    startup.check_pg_dump(pg_dump)
    dplogging.configure(level=log_level, json=log_json)
    settings = Settings(
        data_dir=startup.prepare_data_dir(data_dir), database_url=database_url, clock=clock, pg_dump=pg_dump,
        vault_store=startup.vault_store_url(vault_store), lease_seconds=lease_seconds, key_vault=key_vault,
        provisioning_delay=provisioning_delay,
        restore_drills=restore_drills, restore_roots=tuple(p.resolve() for p in restore_root or ()),
        alert_webhooks=webhooks,
    )  # fmt: skip
    startup.check_vault_store(settings)

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

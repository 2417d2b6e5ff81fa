"""``dpvault verify``: every recovery point's manifest read and its bytes re-hashed against the SHA-256
recorded when it was taken; exit 1 if any is missing, corrupt or of an unknown vault format."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console

from dpvault.cli.common import DEFAULT_DATA_DIR, DatabaseUrl, DataDir, app, err
from dpvault.settings import Settings


@app.command()
def verify(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    database_url: DatabaseUrl = None,
    vault_store: Annotated[str | None, typer.Option(help="As for serve.")] = None,
    vault: Annotated[str | None, typer.Option("--vault", help="Only this vault (name).")] = None,
    instance: Annotated[
        str | None, typer.Option("--instance", help="Only this backup instance (name).")
    ] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="Only check that every object and chunk exists (read nothing).")
    ] = False,
) -> None:
    """Check every recovery point's bytes against its SHA-256; exit 1 if any is corrupt or missing."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
    from rich.table import Table

    from dpvault.cli import startup
    from dpvault.cli.startup import fail
    from dpvault.secrets.local import LocalSecretStore, load_key
    from dpvault.store import RecoveryPointRow, Store
    from dpvault.vault.format import UnsupportedFormatError
    from dpvault.vault.keys import KeyUnavailableError, VaultKeys, load_local_kek
    from dpvault.vault.points import PointDamagedError, RecoveryPoints

    settings = Settings(
        data_dir=data_dir.resolve(),
        database_url=database_url,
        vault_store=startup.vault_store_url(vault_store),
    )
    datastore = startup.opened_vault_store(settings)

    def named(key: str, collection: str, name: str | None) -> bool:
        if name is None:
            return True
        parts = key.split("/")
        return collection in parts and parts[parts.index(collection) + 1] == name.lower()

    async def unknown(store: Store) -> str | None:
        """What --vault/--instance name that no vault or instance is called (None: all exist)."""
        from dpvault.types import Kind

        async with store.read() as tx:
            vaults = [
                r
                for r in await tx.resources_by(Kind.VAULT)
                if vault is None or named(r.key, "backupvaults", vault)
            ]
            if vault is not None and not vaults:
                return f"no backup vault is named {vault!r}"
            if instance is not None:
                keys = {v.key for v in vaults}
                found = [
                    r
                    for r in await tx.resources_by(Kind.INSTANCE)
                    if r.parent_key in keys and named(r.key, "backupinstances", instance)
                ]
                if not found:
                    return f"no backup instance is named {instance!r}" + (
                        f" in vault {vault!r}" if vault else ""
                    )
        return None

    async def check() -> tuple[list[RecoveryPointRow], list[tuple[str, str, str]]]:
        store = await Store.open(settings.resolved_database_url)
        try:
            problem = await unknown(store)
            if problem is not None:
                fail(problem, 2)
            async with store.read() as tx:
                every = await tx.all_recovery_points()
            points = [
                rp
                for rp in every
                if named(rp.instance_key, "backupvaults", vault)
                and named(rp.instance_key, "backupinstances", instance)
            ]
            secrets = LocalSecretStore(store, load_key(settings.identity_dir))
            keys = VaultKeys(store, datastore, load_local_kek(settings.identity_dir), secrets)
            vault_points = RecoveryPoints(store, datastore, grace=0, keys=keys)
            bad: list[tuple[str, str, str]] = []
            columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
            with Progress(*columns, console=err, transient=True) as progress:
                task = progress.add_task("verifying", total=sum(rp.size for rp in points))
                for rp in points:
                    name = rp.instance_key.rsplit("/", 1)[-1]
                    try:
                        await vault_points.verify(
                            rp, progress=lambda n: progress.advance(task, n), quick=quick
                        )
                    except PointDamagedError as exc:
                        bad.append((rp.id, name, exc.problem))
                    except (UnsupportedFormatError, KeyUnavailableError) as exc:
                        bad.append((rp.id, name, str(exc)))
            return points, bad
        finally:
            await store.close()

    points, bad = asyncio.run(check())
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

"""What the commands share: the Typer app, the error console, common options, running against a store."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from dpvault.settings import Settings

T = TypeVar("T")

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    # Click's plain help: wrapped to the terminal (readable at 80 columns), flags without a metavar.
    rich_markup_mode=None,
    help="dpvault: an Azure-compatible Data Protection service.",
)
err = Console(stderr=True, soft_wrap=True)

DEFAULT_DATA_DIR = Path(os.environ.get("DPVAULT_DATA_DIR", ".dpvault"))
DataDir = Annotated[
    Path, typer.Option("--data-dir", envvar="DPVAULT_DATA_DIR", help="Where state, keys and backups live.")
]
DatabaseUrl = Annotated[str | None, typer.Option(envvar="DPVAULT_DATABASE_URL", help="As for serve.")]


def with_store(data_dir: Path, database_url: str | None, work: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``work(store)`` against the data dir's (or URL's) state database."""
    from dpvault.store import Store

    settings = Settings(data_dir=data_dir.resolve(), database_url=database_url)
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    async def run() -> T:
        store = await Store.open(settings.resolved_database_url)
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())

"""azure-storage-blob's async client as dpvault uses it, for the blob engine and for restores of
files into blob containers: imported on first use (the server starts without it), with a retry
policy short enough that an account that does not answer fails a job, retryable, in seconds."""

from __future__ import annotations

from typing import Any


def sdk() -> Any:
    """``azure.storage.blob.aio``."""
    from azure.storage.blob import aio

    return aio


def exceptions() -> Any:
    """``azure.core.exceptions``."""
    from azure.core import exceptions

    return exceptions


def service_client(connection_string: str, *, connect_timeout: int = 10, **config: Any) -> Any:
    """A ``BlobServiceClient`` (use it as an async context manager: it owns a connection pool);
    ``config``: the SDK's own settings (``max_block_size``...)."""
    return sdk().BlobServiceClient.from_connection_string(
        connection_string, connection_timeout=connect_timeout, **config,
        # storage's own policy waits 15 s, then 18 s...: a few short retries instead
        retry_total=3, initial_backoff=0.5, increment_base=2,
    )  # fmt: skip


def account_name(connection_string: str) -> str:
    """The account a connection string names (``devstoreaccount1`` for UseDevelopmentStorage);
    ValueError if it is not an Azure Storage connection string."""
    try:
        return str(
            sdk().BlobServiceClient.from_connection_string(connection_string.strip()).account_name or ""
        )
    except (ValueError, TypeError) as exc:
        raise ValueError("not an Azure Storage connection string") from exc

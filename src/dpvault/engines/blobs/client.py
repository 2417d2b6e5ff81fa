"""azure-storage-blob's async client as dpvault uses it, for the blob engine and for restores of
files into blob containers: imported on first use (the server starts without it), with a retry
policy short enough that an account that does not answer fails a job, retryable, in seconds."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from dpvault.errors import UserError


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


def unreachable(account: str, exc: Exception) -> UserError:
    return UserError(
        "UserErrorStorageAccountUnreachable",
        f"Storage account '{account}' could not be reached ({type(exc).__name__}).",
        "Check the endpoint in the storage account's source mapping (dpvault sources set <account id>) "
        "and that the account accepts connections from dpvault.",
        retryable=True,
    )


def denied(account: str, reason: Any = None) -> UserError:
    why = f" ({str(reason)[:80]})" if reason else ""
    return UserError(
        "UserErrorStorageAccountAccessDenied",
        f"Storage account '{account}' refused dpvault's request{why}.",
        "Update the storage account's source mapping with a current connection string that may list, read "
        "and write blobs and tags (dpvault sources set <account id>), and check the account's network rules.",
    )


@contextlib.asynccontextmanager
async def storage_errors(account: str) -> AsyncIterator[None]:
    """Connection and credential failures as the user's errors; anything else stays an outage."""
    errors = exceptions()
    try:
        yield
    except errors.ClientAuthenticationError:
        raise denied(account) from None
    except errors.ServiceRequestError as exc:
        raise unreachable(account, exc) from None
    except errors.HttpResponseError as exc:
        if exc.status_code != 403:  # 404s and 409s are the caller's to read
            raise
        # AuthorizationFailure (the account's network rules), AuthorizationPermissionMismatch (a SAS
        # without the permission), ...: not an outage to retry
        raise denied(account, getattr(exc, "error_code", None)) from None

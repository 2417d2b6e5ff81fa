"""Opening a datastore from a URL (``--vault-store``), and the start-up check that it works.

- a path, or ``file:///abs/path``: a :class:`LocalDatastore` (an empty URL: ``data_dir_default``);
- ``azure://<container>[/<prefix>]``: Azure Blob; credentials from ``AZURE_STORAGE_CONNECTION_STRING``
  (Azurite's development string works), or ``AZURE_STORAGE_ACCOUNT_NAME`` + ``AZURE_STORAGE_ACCOUNT_KEY``
  (+ ``AZURE_STORAGE_ENDPOINT``);
- ``s3://<bucket>[/<prefix>]``: S3; ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` (+
  ``AWS_SESSION_TOKEN``), ``AWS_REGION`` (default us-east-1), ``AWS_ENDPOINT_URL`` for S3-compatible
  servers (path-style addressing; plain HTTP only when that URL says ``http``).

Credentials come from the environment only, never the URL, and no message ever repeats a value read
from the environment: errors name the variable to fix.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dpvault.datastores.base import (
    Datastore,
    DatastoreConfigError,
    DatastoreError,
    valid_key,
)
from dpvault.datastores.local import STAGING, LocalDatastore
from dpvault.datastores.objects import ObjectDatastore, S3Lock

_CONTAINER = re.compile(r"^(?=.{3,63}$)[a-z0-9](?:[a-z0-9]|-(?!-))*[a-z0-9]$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# The development account every Azurite has (public, documented): UseDevelopmentStorage=true
_AZURITE_ACCOUNT = "devstoreaccount1"
_AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def open_datastore(
    url: str,
    *,
    data_dir_default: Path,
    heartbeat: float,
    environ: Mapping[str, str] = os.environ,
    retry_timeout: float = 60.0,
    tmp_dir: Path | None = None,
) -> Datastore:
    """The datastore ``url`` names (see the module docstring); DatastoreConfigError, in one line, for
    a URL or environment that cannot work. Nothing is contacted: :func:`check` does that.
    ``retry_timeout``: how long an object store's requests are retried before the store is
    unavailable; ``tmp_dir``: where an object store's ``local_copy`` downloads to."""
    url = url.strip()
    if not url:
        return LocalDatastore(data_dir_default, heartbeat=heartbeat)
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("", "file"):
        return LocalDatastore(_local_path(url, scheme), heartbeat=heartbeat)
    if scheme not in ("azure", "s3"):
        raise DatastoreConfigError(
            f"unknown vault store scheme {scheme + '://'!r}: use a path, file:///path, azure://container or s3://bucket"
        )
    where, prefix = _split(url, scheme)
    name = f"{scheme}://{where}" + (f"/{prefix}" if prefix else "")
    # backoff from 0.1 s doubling: 10 retries span about a minute, bounded by retry_timeout
    retry: Any = {"max_retries": 10, "retry_timeout": timedelta(seconds=retry_timeout)}
    if scheme == "azure":
        store = _azure(where, prefix, environ, retry)
        return ObjectDatastore(store, name=name, heartbeat=heartbeat, tmp_dir=tmp_dir)
    store, lock = _s3(where, prefix, environ, retry)
    return ObjectDatastore(store, name=name, heartbeat=heartbeat, s3=lock, tmp_dir=tmp_dir)


async def check(store: Datastore) -> None:
    """At start-up: prove the store is reachable and writable, or raise DatastoreConfigError (fix the
    setup) or DatastoreUnavailableError (the store is down: try again), with a one-line message."""
    if isinstance(store, ObjectDatastore):
        await store.check()
        return
    if isinstance(store, LocalDatastore):
        probe = store.root / STAGING / "check.probe"

        def write_and_remove() -> None:
            probe.write_bytes(b"dpvault")
            probe.unlink()

        try:
            await asyncio.to_thread(write_and_remove)
        except OSError as exc:
            raise DatastoreConfigError(
                f"the vault store {store.root} cannot be written: {os.strerror(exc.errno or 0)}"
            ) from None
        return
    try:
        async for _ in store.list():
            break
    except DatastoreError as exc:
        raise DatastoreConfigError(str(exc)) from None


def _local_path(url: str, scheme: str) -> Path:
    if scheme == "file":
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise DatastoreConfigError("a file:// vault store needs an absolute path: file:///abs/path")
        return Path(parts.path)
    return Path(url).expanduser().absolute()


def _split(url: str, scheme: str) -> tuple[str, str]:
    """The container or bucket and the key prefix of an ``azure://`` or ``s3://`` URL."""
    rest = url.split("://", 1)[1]
    if "?" in rest or "#" in rest or "@" in rest.split("/", 1)[0]:
        raise DatastoreConfigError(
            f"a {scheme}:// vault store URL takes no user, query or fragment: credentials come from the environment"
        )
    where, _, prefix = rest.partition("/")
    prefix = prefix.strip("/")
    what = "container" if scheme == "azure" else "bucket"
    if not where:
        raise DatastoreConfigError(
            f"the {scheme}:// vault store URL names no {what}: {scheme}://<{what}>[/<prefix>]"
        )
    if not (_CONTAINER if scheme == "azure" else _BUCKET).match(where):
        raise DatastoreConfigError(
            f"{where!r} is not a valid {what} name (3-63 lower-case letters, digits and hyphens)"
        )
    if prefix and not valid_key(prefix):
        raise DatastoreConfigError(
            f"the vault store prefix {prefix!r} may hold only lower-case letters, digits, '.', '_', '-' and '/'"
        )
    return where, prefix


def _need(environ: Mapping[str, str], variable: str, why: str) -> str:
    value = environ.get(variable, "").strip()
    if not value:
        raise DatastoreConfigError(f"{variable} is not set: {why}")
    return value


def _http_options(endpoint: str | None, variable: str) -> dict[str, Any]:
    if endpoint is None:
        return {"connect_timeout": timedelta(seconds=5)}
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DatastoreConfigError(f"{variable} must hold an http:// or https:// URL")
    return {"connect_timeout": timedelta(seconds=5), "allow_http": parts.scheme == "http"}


def connection_string_fields(text: str) -> dict[str, str]:
    """An Azure Storage connection string's fields, names lower-cased."""
    fields: dict[str, str] = {}
    for part in text.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep:
            fields[name.strip().lower()] = value.strip()
    return fields


def _azure(container: str, prefix: str, environ: Mapping[str, str], retry: Any) -> Any:
    from obstore.store import AzureStore

    conn = environ.get("AZURE_STORAGE_CONNECTION_STRING", "").strip()
    if conn:
        source = "AZURE_STORAGE_CONNECTION_STRING"
        fields = connection_string_fields(conn)
        if fields.get("usedevelopmentstorage", "").lower() == "true":
            fields.setdefault("accountname", _AZURITE_ACCOUNT)
            fields.setdefault("accountkey", _AZURITE_KEY)
            fields.setdefault("blobendpoint", f"http://127.0.0.1:10000/{_AZURITE_ACCOUNT}")
        account, key = fields.get("accountname", ""), fields.get("accountkey", "")
        if not account or not key:
            raise DatastoreConfigError(f"{source} holds no AccountName and AccountKey")
        endpoint = fields.get("blobendpoint") or None
        if endpoint is None and "endpointsuffix" in fields:
            protocol = fields.get("defaultendpointsprotocol", "https")
            endpoint = f"{protocol}://{account}.blob.{fields['endpointsuffix']}"
        endpoint_source = source
    else:
        why = "an azure:// vault store needs AZURE_STORAGE_CONNECTION_STRING, or the account's name and key"
        account = _need(environ, "AZURE_STORAGE_ACCOUNT_NAME", why)
        key = _need(environ, "AZURE_STORAGE_ACCOUNT_KEY", why)
        source = "AZURE_STORAGE_ACCOUNT_KEY"
        endpoint = environ.get("AZURE_STORAGE_ENDPOINT", "").strip() or None
        endpoint_source = "AZURE_STORAGE_ENDPOINT"
    try:
        base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        raise DatastoreConfigError(f"the account key in {source} is not base64") from None
    config: dict[str, Any] = {"account_name": account, "account_key": key}
    if endpoint is not None:
        config["endpoint"] = endpoint.rstrip("/")
    options = _http_options(endpoint, endpoint_source)
    try:
        return AzureStore(
            container, prefix=prefix or None, config=config, client_options=options, retry_config=retry
        )
    except Exception as exc:  # obstore's own validation: its message may quote the config
        raise DatastoreConfigError(
            f"the azure:// vault store cannot be set up from {source} ({type(exc).__name__})"
        ) from None


def _s3(bucket: str, prefix: str, environ: Mapping[str, str], retry: Any) -> tuple[Any, S3Lock]:
    from obstore.store import S3Store

    why = "an s3:// vault store needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    key_id = _need(environ, "AWS_ACCESS_KEY_ID", why)
    secret = _need(environ, "AWS_SECRET_ACCESS_KEY", why)
    token = environ.get("AWS_SESSION_TOKEN", "").strip() or None
    region = (
        environ.get("AWS_REGION", "").strip() or environ.get("AWS_DEFAULT_REGION", "").strip() or "us-east-1"
    )
    variable = "AWS_ENDPOINT_URL_S3" if environ.get("AWS_ENDPOINT_URL_S3", "").strip() else "AWS_ENDPOINT_URL"
    endpoint = environ.get(variable, "").strip().rstrip("/") or None
    options = _http_options(endpoint, variable)
    config: dict[str, Any] = {"region": region, "access_key_id": key_id, "secret_access_key": secret}
    if token:
        config["session_token"] = token
    if endpoint is not None:  # S3-compatible servers (moto, MinIO) address buckets by path
        config["endpoint"] = endpoint
        config["virtual_hosted_style_request"] = False
    try:
        store = S3Store(
            bucket, prefix=prefix or None, config=config, client_options=options, retry_config=retry
        )
    except Exception as exc:
        raise DatastoreConfigError(f"the s3:// vault store cannot be set up ({type(exc).__name__})") from None
    lock = S3Lock(bucket, prefix, region, endpoint, key_id, secret, token)
    return store, lock


__all__ = ["check", "open_datastore"]

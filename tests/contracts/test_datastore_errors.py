"""How object stores fail: every failure is one of the port's errors, and none repeats a secret.

A store that cannot be reached is DatastoreUnavailableError (transient: the job is retried); wrong
credentials are DatastoreRefusedError on use and DatastoreConfigError at the start-up ``check``; a
container or bucket that does not exist is DatastoreConfigError."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from dpvault.datastores import (
    Datastore,
    DatastoreConfigError,
    DatastoreRefusedError,
    DatastoreUnavailableError,
    check,
    open_datastore,
)
from dpvault.datastores.base import put_bytes
from tests.objectstores import AZURITE_KEY, Azurite, MotoS3, free_port, unique

WRONG_KEY = "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB"


def _open(url: str, environ: dict[str, str], tmp_path: Path) -> Datastore:
    return open_datastore(url, data_dir_default=tmp_path, heartbeat=0.2, environ=environ, retry_timeout=1)


def test_a_stopped_s3_server_is_unavailable(tmp_path: Path) -> None:
    server = MotoS3().start()
    bucket = server.make_bucket(unique("gone"))
    store = _open(f"s3://{bucket}", server.environ(), tmp_path)

    async def go() -> None:
        await put_bytes(store, "v/a.json", b"{}")
        server.stop()
        started = time.monotonic()
        with pytest.raises(DatastoreUnavailableError) as raised:
            await store.stat("v/a.json")
        assert time.monotonic() - started < 30
        assert "unavailable" in str(raised.value) and server.SECRET_KEY not in str(raised.value)
        with pytest.raises(DatastoreUnavailableError):
            await put_bytes(store, "v/b.json", b"{}")
        with pytest.raises(DatastoreUnavailableError):
            await check(store)

    asyncio.run(go())


def test_an_azure_endpoint_nothing_answers_on_is_unavailable(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/devstoreaccount1"
    environ = {
        "AZURE_STORAGE_CONNECTION_STRING": f"AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};BlobEndpoint={dead};"
    }
    store = _open("azure://nowhere/vault", environ, tmp_path)

    async def go() -> None:
        with pytest.raises(DatastoreUnavailableError) as raised:
            await check(store)
        assert AZURITE_KEY not in str(raised.value)
        with pytest.raises(DatastoreUnavailableError):
            _ = [info async for info in store.list()]

    asyncio.run(go())


def test_wrong_azure_credentials_are_refused(azurite: Azurite, tmp_path: Path) -> None:
    container = azurite.make_container(unique("creds"))
    environ = {"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string.replace(AZURITE_KEY, WRONG_KEY)}
    store = _open(f"azure://{container}", environ, tmp_path)

    async def go() -> None:
        with pytest.raises(DatastoreConfigError) as at_start:
            await check(store)
        with pytest.raises(DatastoreRefusedError) as on_use:
            await put_bytes(store, "v/a.json", b"{}")
        for raised in (at_start, on_use):
            assert "credentials" in str(raised.value)
            assert WRONG_KEY not in str(raised.value) and AZURITE_KEY not in str(raised.value)

    asyncio.run(go())


@pytest.mark.parametrize("kind", ["azure", "s3"])
def test_a_missing_container_or_bucket_fails_the_check(
    request: pytest.FixtureRequest, kind: str, tmp_path: Path
) -> None:
    server = request.getfixturevalue("azurite" if kind == "azure" else "moto_s3")
    store = _open(f"{kind}://{unique('none')}/vault", server.environ(), tmp_path)

    async def go() -> None:
        with pytest.raises(DatastoreConfigError) as raised:
            await check(store)
        assert "does not exist" in str(raised.value)

    asyncio.run(go())


@pytest.mark.parametrize("kind", ["azure", "s3"])
def test_a_good_store_passes_the_check_and_keeps_no_probe(
    request: pytest.FixtureRequest, kind: str, tmp_path: Path
) -> None:
    server = request.getfixturevalue("azurite" if kind == "azure" else "moto_s3")
    name = server.make_container(unique("ok")) if kind == "azure" else server.make_bucket(unique("ok"))
    store = _open(f"{kind}://{name}", server.environ(), tmp_path)

    async def go() -> None:
        await check(store)
        assert [info async for info in store.list()] == []

    asyncio.run(go())

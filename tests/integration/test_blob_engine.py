"""The blob container engine in-process against Azurite: what a restore that gave up leaves goes
(``abandon``), a connection string without the permissions a backup needs is the user's error, and
auto-protection leaves the account's own ``$`` containers alone."""

from __future__ import annotations

import asyncio
import datetime
import uuid
from typing import Any

import pytest

from dpvault.engines.blobs.engine import OWNER_KEY, BlobContainerEngine
from dpvault.errors import UserError
from tests.objectstores import Azurite


def _service(connection_string: str) -> Any:
    from azure.storage.blob import BlobServiceClient

    return BlobServiceClient.from_connection_string(connection_string)


async def _drain(engine: BlobContainerEngine, params: dict[str, str]) -> list[str]:
    names = []
    async for item in engine.dump_files(params, {}):
        names.append(item.name)
        if item.chunks is not None:
            async for _ in item.chunks:
                pass
    return names


def test_abandon_removes_only_the_blobs_and_containers_of_its_job() -> None:
    job, other = str(uuid.uuid4()), str(uuid.uuid4())
    engine = BlobContainerEngine()
    with Azurite() as az:
        service = _service(az.connection_string)
        made = service.create_container("made-by-job", metadata={OWNER_KEY: job, "owner": "team-a"})
        made.upload_blob("half.txt", b"written by the crashed job", metadata={OWNER_KEY: job})
        there = service.create_container("existing")
        there.upload_blob("mine.txt", b"job", metadata={OWNER_KEY: job})
        there.upload_blob("theirs.txt", b"other job", metadata={OWNER_KEY: other})
        there.upload_blob("users.txt", b"the user's", metadata={"k": "v"})
        service.create_container("other-job", metadata={OWNER_KEY: other})

        asyncio.run(engine.abandon(engine.parse_secret(az.connection_string), job))

        assert sorted(c.name for c in service.list_containers()) == ["existing", "other-job"]
        assert sorted(b.name for b in there.list_blobs()) == ["theirs.txt", "users.txt"]
        asyncio.run(engine.abandon(engine.parse_secret(az.connection_string), job))  # again: nothing more
        assert sorted(b.name for b in there.list_blobs()) == ["theirs.txt", "users.txt"]


def test_a_connection_string_that_may_not_list_is_access_denied_not_an_outage() -> None:
    from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas

    engine = BlobContainerEngine()
    with Azurite() as az:
        service = _service(az.connection_string)
        service.create_container("data").upload_blob("a.txt", b"a")
        key = dict(kv.split("=", 1) for kv in az.connection_string.split(";") if "=" in kv)["AccountKey"]
        sas = generate_account_sas(
            service.account_name, key, ResourceTypes(service=True, container=True, object=True),
            AccountSasPermissions(read=True), expiry=datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1),
        )  # fmt: skip
        read_only = f"BlobEndpoint={service.url.rstrip('/')};SharedAccessSignature={sas}"
        params = {**engine.parse_secret(read_only), "containers": "data", "vaulted": "1"}
        with pytest.raises(UserError) as denied:
            asyncio.run(_drain(engine, params))
        assert denied.value.code == "UserErrorStorageAccountAccessDenied", denied.value
        assert "AuthorizationPermissionMismatch" in denied.value.message
        assert sas not in denied.value.message and key not in denied.value.message


def test_auto_protection_leaves_the_accounts_own_dollar_containers_alone() -> None:
    engine = BlobContainerEngine()
    with Azurite() as az:
        service = _service(az.connection_string)
        service.create_container("$web").upload_blob("index.html", b"<html></html>")
        service.create_container("site").upload_blob("a.txt", b"a")
        params = {**engine.parse_secret(az.connection_string), "vaulted": "1", "auto_exclude": "\n"}
        names = asyncio.run(_drain(engine, params))
        assert [n for n in names if "index.html" in n or n.startswith("$")] == [], names
        assert any("a.txt" in n for n in names), names


def test_a_container_listed_over_several_pages_is_backed_up_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """The listing is taken a page at a time (memory bounded by a page): every blob of every page is
    in the dump once, in the listing once, small blobs fetched ahead across page ends."""
    from dpvault.engines.blobs import engine as blob_engine
    from dpvault.engines.blobs.listing import decode

    monkeypatch.setattr(blob_engine, "LIST_PAGE", 7)
    engine = BlobContainerEngine()
    with Azurite() as az:
        container = _service(az.connection_string).create_container("paged")
        names = [f"p{i % 3}/blob-{i:03d}" for i in range(23)]
        for name in names:
            container.upload_blob(name, name.encode() * 3)

        async def dump() -> tuple[dict[str, bytes], bytes]:
            params = {**engine.parse_secret(az.connection_string), "containers": "paged", "vaulted": "1"}
            got: dict[str, bytes] = {}
            async for item in engine.dump_files(params, {}):
                assert item.name not in got, item.name
                assert item.chunks is not None
                got[item.name] = b"".join([c async for c in item.chunks])
            return got, got.pop("paged.listing")

        files, listing = asyncio.run(dump())
        assert files == {f"paged/{n}": n.encode() * 3 for n in names}
        assert sorted(r.name for r in decode(listing).blobs) == sorted(names)

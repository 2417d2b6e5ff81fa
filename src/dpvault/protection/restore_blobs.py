"""Restore as files into a blob container (``RestoreFilesTargetInfo``, ``AzureBlobs``): a recovery
point's archive becomes the blobs ``<filePrefix>.dump`` and ``<filePrefix>.dump.sha256``.

The container is named by ``targetDetails.url`` (``https://<account>.blob.core.windows.net/<c>``, or
Azurite's ``http://127.0.0.1:<port>/<account>/<c>``) or ``targetResourceArmId``
(``.../storageAccounts/<a>/blobServices/default/containers/<c>``). Azure writes there with the vault's
managed identity; dpvault uses the storage account's source mapping (``dpvault sources set``), so the
connection string, not the URL's host, says where the account is.

Never overwriting: both blobs are put with If-None-Match (obstore's ``mode="create"``), so a blob that
appears meanwhile is not replaced either. The dump streams (memory stays flat), hashed on the way; a
digest that differs from the point's removes the blob again. Each blob carries the restore job's id
in its metadata, so a re-run of the same job (after a crash) replaces only its own work.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import obstore

from dpvault.datastores.base import DatastoreConfigError
from dpvault.datastores.urls import connection_string_fields as storage_fields
from dpvault.datastores.urls import open_datastore
from dpvault.errors import UserError
from dpvault.protection.restore_files import check_prefix
from dpvault.protection.sources import Sources
from dpvault.protection.verified import corrupted, point_files
from dpvault.store import RecoveryPointRow
from dpvault.vault.points import PointDamagedError, RecoveryPoints

_CONTAINER = re.compile(r"^(?=.{3,63}$)[a-z0-9](?:[a-z0-9]|-(?!-))*[a-z0-9]$")
_ACCOUNT = re.compile(r"^[a-z0-9]{3,24}$")
_CONTAINER_ID = re.compile(
    r"^(?P<account>/subscriptions/[^/]+/resourcegroups/[^/]+/providers/microsoft\.storage/storageaccounts/"
    r"(?P<name>[^/]+))/blobservices/default/containers/(?P<container>[^/]+)$"
)
_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
OWNER_KEY = "dpvaultrestorejob"  # blob metadata: the restore job that wrote it (a C# identifier)
PART = 8 << 20


def _invalid(what: str, why: str) -> UserError:
    return UserError(
        "UserErrorInvalidRestoreTarget",
        f"'{what[:300]}' is not a blob container to restore to: {why}.",
        "Give targetDetails.url as https://<account>.blob.core.windows.net/<container> (or Azurite's "
        "http://127.0.0.1:<port>/<account>/<container>), or targetDetails.targetResourceArmId of the container.",
    )


@dataclass(frozen=True, slots=True)
class BlobTarget:
    account: str
    container: str
    account_id: str | None  # the storage account's ARM id when the request gave the container's
    prefix: str

    @property
    def names(self) -> tuple[str, str]:
        return f"{self.prefix}.dump", f"{self.prefix}.dump.sha256"

    def file_names(self, files: list[str]) -> list[tuple[str, str]]:
        """(point file, blob name) for each file of the point: one file is ``<prefix>.dump``; a
        whole server's are ``<prefix>_<database>.dump`` and ``<prefix>_globals.sql``."""
        if len(files) == 1:
            return [(files[0], self.names[0])]
        return [(name, f"{self.prefix}_{name}") for name in files]

    def all_names(self, files: list[str]) -> list[str]:
        return [n for _, blob in self.file_names(files) for n in (blob, f"{blob}.sha256")]


def is_blob_target(details: dict[str, Any]) -> bool:
    """A files target in a blob container (an http(s) URL or a container's ARM id), not a directory."""
    url = str(details.get("url") or "")
    return urlsplit(url).scheme.lower() in ("http", "https") or bool(details.get("targetResourceArmId"))


def _from_url(url: str) -> tuple[str, str]:
    parts = urlsplit(url.strip())
    if parts.query or parts.fragment or parts.username or parts.password:
        raise _invalid(url, "it has a query, fragment or user part")
    host = (parts.hostname or "").lower()
    segments = [unquote(s) for s in parts.path.strip("/").split("/") if s]
    if host in _LOCAL_HOSTS:  # Azurite's path-style form
        if len(segments) != 2:
            raise _invalid(url, "an Azurite URL is http://127.0.0.1:<port>/<account>/<container>")
        account, container = segments
    else:
        if parts.scheme != "https" or ".blob." not in host:
            raise _invalid(url, "the host is not <account>.blob.core.windows.net")
        if len(segments) != 1:
            raise _invalid(url, "the URL names more than a container (blob names come from filePrefix)")
        account, container = host.split(".blob.", 1)[0], segments[0]
    return account, container


def parse_target(details: dict[str, Any]) -> BlobTarget:
    """The container a blob files target names, or UserError (400 at the request)."""
    prefix = check_prefix(details["filePrefix"])
    arm = str(details.get("targetResourceArmId") or "").strip().rstrip("/")
    url = str(details.get("url") or "").strip()
    account_id = None
    if arm:
        match = _CONTAINER_ID.match(arm.lower())
        if match is None:
            raise _invalid(
                arm, "targetResourceArmId must be /subscriptions/<s>/resourceGroups/<g>/providers/"
                "Microsoft.Storage/storageAccounts/<account>/blobServices/default/containers/<container>",
            )  # fmt: skip
        account, container, account_id = match["name"], match["container"], match["account"]
        if urlsplit(url).scheme.lower() in ("http", "https") and _from_url(url) != (account, container):
            raise _invalid(url, "targetDetails.url and targetResourceArmId name different containers")
    else:
        account, container = _from_url(url)
        account = account.lower()
    if not _ACCOUNT.match(account):
        raise _invalid(url or arm, f"'{account[:30]}' is not a storage account name")
    if not _CONTAINER.match(container):
        raise _invalid(
            url or arm, f"'{container[:70]}' is not a container name (3-63 lower-case letters, digits, '-')"
        )
    return BlobTarget(account, container, account_id, prefix)


def container_not_found(target: BlobTarget) -> UserError:
    return UserError(
        "UserErrorContainerNotFound",
        f"The container '{target.container}' does not exist in storage account '{target.account}'.",
        "Create the container first (az storage container create), or name an existing one.",
    )


def blob_exists(name: str, target: BlobTarget) -> UserError:
    return UserError(
        "UserErrorTargetFileExists",
        f"'{name}' already exists in container '{target.container}' and recoveryOption is FailIfExists.",
        "Choose another filePrefix or remove the existing blob.",
    )


def _unreachable(target: BlobTarget, exc: BaseException) -> UserError:
    return UserError(
        "UserErrorStorageAccountUnreachable",
        f"Storage account '{target.account}' could not be written to ({type(exc).__name__}).",
        "Check the storage account's source mapping (dpvault sources set) and that the account is reachable.",
        retryable=True,
    )


class BlobRestorer:
    def __init__(self, points: RecoveryPoints, sources: Sources, tmp_dir: Path) -> None:
        self.points = points
        self.sources = sources
        self.tmp_dir = tmp_dir

    async def _store(self, target: BlobTarget, subscription: str) -> Any:
        """The obstore store of the target container, through the account's source mapping."""
        if target.account_id is not None:
            conn = await self.sources.source(target.account_id, subscription)
        else:
            conn = await self.sources.storage_account(target.account, subscription)
        fields = storage_fields(conn)
        named = fields.get("accountname") or ("devstoreaccount1" if "usedevelopmentstorage" in fields else "")
        if named.lower() != target.account:
            raise UserError(
                "UserErrorDatasourceNotMapped",
                f"The source mapping of storage account '{target.account}' holds the connection string of "
                "another account.",
                f"Map the account again with its own connection string (dpvault sources set <id of {target.account}>).",
            )
        try:
            datastore = open_datastore(
                f"azure://{target.container}", data_dir_default=self.tmp_dir, heartbeat=5.0,
                environ={"AZURE_STORAGE_CONNECTION_STRING": conn}, retry_timeout=10.0, tmp_dir=self.tmp_dir,
            )  # fmt: skip
        except DatastoreConfigError as exc:
            # the message names the variable, never the value
            raise UserError(
                "UserErrorInvalidConnectionString",
                f"The source mapping of storage account '{target.account}' cannot be used: {exc}.",
                "Map the account again (dpvault sources set) with its connection string.",
            ) from None
        return datastore.store  # type: ignore[attr-defined]

    async def _check_free(
        self, store: Any, target: BlobTarget, owner: str | None, names: list[str] | None = None
    ) -> list[str]:
        """UserError if the container is missing or a blob to write exists (and is not ``owner``'s);
        returns the names ``owner`` already wrote (a re-run's leftovers)."""
        try:
            stream = obstore.list(store, None, chunk_size=1)
            with contextlib.suppress(StopAsyncIteration):
                await anext(stream)
        except Exception as exc:
            if "ContainerNotFound" in str(exc) or "404" in str(exc):
                raise container_not_found(target) from None
            raise _unreachable(target, exc) from None
        ours = []
        for name in names if names is not None else list(target.names):
            try:
                result = await obstore.get_async(store, name, options={"head": True})
            except FileNotFoundError:
                continue
            except Exception as exc:
                raise _unreachable(target, exc) from None
            if owner is not None and result.attributes.get(OWNER_KEY) == owner:
                ours.append(name)
                continue
            raise blob_exists(name, target)
        return ours

    async def check(self, details: dict[str, Any], subscription: str, files: list[str] | None = None) -> None:
        """What validateRestore checks: the mapping, the container, and that the names are free."""
        target = parse_target(details)
        names = target.all_names(files) if files else None
        await self._check_free(await self._store(target, subscription), target, None, names)

    async def to_blobs(
        self, rp: RecoveryPointRow, details: dict[str, Any], subscription: str, owner: str
    ) -> dict[str, str]:
        """Stream the point into ``<prefix>.dump``, then write ``<prefix>.dump.sha256``; neither
        overwrites a blob, and a failure removes what this job wrote."""
        target = parse_target(details)
        store = await self._store(target, subscription)
        files = await point_files(self.points, rp)
        sums = dict(files)
        placed = target.file_names([name for name, _ in files])
        names = [n for _, blob in placed for n in (blob, f"{blob}.sha256")]
        for name in await self._check_free(store, target, owner, names):
            await obstore.delete_async(store, name)  # an earlier attempt of this very job
        meta = {OWNER_KEY: owner}
        written: list[str] = []
        try:
            for name, blob in placed:
                await self._copy(store, target, rp, name or None, blob, sums[name], meta, written)
        except BaseException as exc:
            for name in written:  # nothing half-written left visible
                with contextlib.suppress(Exception):
                    await obstore.delete_async(store, name)
            if isinstance(exc, PointDamagedError):
                raise corrupted(rp.id) from None
            raise
        where = f"{target.account}/{target.container}"
        if len(placed) == 1:
            return {"RestoredFile": f"{where}/{placed[0][1]}", "SHA256": rp.sha256}
        result = {"RestoredFiles": ",".join(f"{where}/{blob}" for _, blob in placed), "SHA256": rp.sha256}
        for name, blob in placed:
            result[f"SHA256:{blob}"] = sums[name]
        return result

    async def abandon(self, details: dict[str, Any], subscription: str, owner: str) -> int:
        """The job gave up: remove the blobs it wrote (``<prefix>.dump``, ``<prefix>_*`` and their
        ``.sha256``, carrying its id in their metadata), never anyone else's. Returns how many."""
        try:
            target = parse_target(details)
            store = await self._store(target, subscription)
        except UserError:
            return 0  # a target it could never have written to
        removed = 0
        batches = obstore.list(store, None, chunk_size=1000)
        async for batch in batches:
            for meta in batch:
                name = meta["path"]
                if not (name.startswith(f"{target.prefix}_") or name.startswith(f"{target.prefix}.dump")):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    head = await obstore.get_async(store, name, options={"head": True})
                    if head.attributes.get(OWNER_KEY) == owner:
                        await obstore.delete_async(store, name)
                        removed += 1
        return removed

    async def _copy(
        self,
        store: Any,
        target: BlobTarget,
        rp: RecoveryPointRow,
        name: str | None,
        blob: str,
        sha256: str,
        meta: dict[str, str],
        written: list[str],
    ) -> None:
        """One file of the point into ``blob``, streamed and checked, then its ``.sha256`` blob."""
        digest = hashlib.sha256()

        async def chunks() -> AsyncIterator[bytes]:
            async for chunk in self.points.read(rp, name):
                digest.update(chunk)
                yield chunk

        await self._put(store, target, blob, chunks(), meta)
        written.append(blob)
        if digest.hexdigest() != sha256:
            raise corrupted(rp.id)
        line = f"{sha256}  {blob}\n".encode()
        await self._put(store, target, f"{blob}.sha256", line, {**meta, "Content-Type": "text/plain"})
        written.append(f"{blob}.sha256")

    async def _put(
        self, store: Any, target: BlobTarget, name: str, data: Any, attributes: dict[str, str]
    ) -> None:
        try:
            await obstore.put_async(
                store, name, data, mode="create", attributes=attributes, chunk_size=PART, max_concurrency=4
            )
        except UserError:
            raise
        except PointDamagedError:
            raise
        except Exception as exc:
            if type(exc).__name__ == "AlreadyExistsError":
                raise blob_exists(name, target) from None
            if isinstance(exc, FileNotFoundError):
                raise container_not_found(target) from None
            raise _unreachable(target, exc) from None

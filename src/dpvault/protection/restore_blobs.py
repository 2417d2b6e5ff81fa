"""Restore as files into a blob container (``RestoreFilesTargetInfo``, ``AzureBlobs``): a recovery
point's archive becomes the blobs ``<filePrefix>.dump`` and ``<filePrefix>.dump.sha256``.

The container is named by ``targetDetails.url`` (``https://<account>.blob.core.windows.net/<c>``, or
Azurite's ``http://127.0.0.1:<port>/<account>/<c>``) or ``targetResourceArmId``
(``.../storageAccounts/<a>/blobServices/default/containers/<c>``). Azure writes there with the vault's
managed identity; dpvault uses the storage account's source mapping (``dpvault sources set``), so the
connection string, not the URL's host, says where the account is.

Never overwriting: both blobs are put with If-None-Match (azure-storage-blob's ``overwrite=False``,
on the commit of a blob put in blocks too), so a blob that appears meanwhile is not replaced either.
The dump streams (memory stays flat), hashed on the way; a digest that differs from the point's
removes the blob again. Each blob carries the restore job's id in its metadata, so a re-run of the
same job (after a crash) replaces only its own work.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from dpvault.engines.blobs.client import account_name, service_client, storage_errors, unreachable
from dpvault.engines.blobs.client import exceptions as storage_exceptions
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
PART = 8 << 20  # block size of a dump put in blocks


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


@contextlib.asynccontextmanager
async def _errors(target: BlobTarget) -> AsyncIterator[None]:
    """The blob engine's ``storage_errors`` (refused: AccessDenied; no answer: Unreachable, retryable)
    plus what a restore target adds: a missing container, and any other storage failure retried as
    an account that did not answer. The point's own errors pass as they are."""
    exceptions = storage_exceptions()
    try:
        async with storage_errors(target.account):
            yield
    except exceptions.ResourceNotFoundError:
        raise container_not_found(target) from None
    except exceptions.AzureError as exc:
        raise unreachable(target.account, exc) from None


class BlobRestorer:
    def __init__(self, points: RecoveryPoints, sources: Sources) -> None:
        self.points = points
        self.sources = sources

    @contextlib.asynccontextmanager
    async def _container(self, target: BlobTarget, subscription: str) -> AsyncIterator[Any]:
        """The target container's client, through the account's source mapping; inside, storage
        errors are the user's (``_errors``)."""
        if target.account_id is not None:
            conn = await self.sources.source(target.account_id, subscription)
        else:
            conn = await self.sources.storage_account(target.account, subscription)
        try:
            named = account_name(conn)
        except ValueError:
            # the message never holds the value
            raise UserError(
                "UserErrorInvalidConnectionString",
                f"The source mapping of storage account '{target.account}' is not an Azure Storage "
                "connection string.",
                "Map the account again (dpvault sources set) with its connection string.",
            ) from None
        if named.lower() != target.account:
            raise UserError(
                "UserErrorDatasourceNotMapped",
                f"The source mapping of storage account '{target.account}' holds the connection string of "
                "another account.",
                f"Map the account again with its own connection string (dpvault sources set <id of {target.account}>).",
            )
        async with service_client(conn, max_block_size=PART) as service, _errors(target):
            yield service.get_container_client(target.container)

    async def _check_free(
        self, container: Any, target: BlobTarget, owner: str | None, names: list[str] | None = None
    ) -> list[str]:
        """UserError if the container is missing or a blob to write exists (and is not ``owner``'s);
        returns the names ``owner`` already wrote (a re-run's leftovers)."""
        exceptions = storage_exceptions()
        await container.get_container_properties()  # a missing container: ResourceNotFoundError
        ours = []
        for name in names if names is not None else list(target.names):
            try:
                props = await container.get_blob_client(name).get_blob_properties()
            except exceptions.ResourceNotFoundError:
                continue
            if owner is not None and (props.metadata or {}).get(OWNER_KEY) == owner:
                ours.append(name)
                continue
            raise blob_exists(name, target)
        return ours

    async def check(self, details: dict[str, Any], subscription: str, files: list[str] | None = None) -> None:
        """What validateRestore checks: the mapping, the container, and that the names are free."""
        target = parse_target(details)
        names = target.all_names(files) if files else None
        async with self._container(target, subscription) as container:
            await self._check_free(container, target, None, names)

    async def to_blobs(
        self, rp: RecoveryPointRow, details: dict[str, Any], subscription: str, owner: str
    ) -> dict[str, str]:
        """Stream each file of the point into its blob, then write its ``.sha256``; nothing
        overwrites a blob, and a failure removes what this job wrote."""
        target = parse_target(details)
        files = await point_files(self.points, rp)
        sums = dict(files)
        placed = target.file_names([name for name, _ in files])
        names = [n for _, blob in placed for n in (blob, f"{blob}.sha256")]
        async with self._container(target, subscription) as container:
            for name in await self._check_free(container, target, owner, names):
                await _delete(container, name)  # an earlier attempt of this very job
            meta = {OWNER_KEY: owner}
            written: list[str] = []
            try:
                for name, blob in placed:
                    await self._copy(container, target, rp, name or None, blob, sums[name], meta, written)
            except BaseException as exc:
                for name in written:  # nothing half-written left visible
                    with contextlib.suppress(Exception):
                        await _delete(container, name)
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
            async with self._container(target, subscription) as container:
                removed = 0
                async for blob in container.list_blobs(name_starts_with=target.prefix, include=["metadata"]):
                    name = blob.name
                    if not (name.startswith(f"{target.prefix}_") or name.startswith(f"{target.prefix}.dump")):
                        continue
                    if (blob.metadata or {}).get(OWNER_KEY) == owner:
                        await _delete(container, name)
                        removed += 1
                return removed
        except UserError as exc:
            if exc.code in ("UserErrorContainerNotFound", "UserErrorInvalidRestoreTarget",
                            "UserErrorDatasourceNotMapped", "UserErrorInvalidConnectionString"):  # fmt: skip
                return 0  # a target it could never have written to
            raise

    async def _copy(
        self,
        container: Any,
        target: BlobTarget,
        rp: RecoveryPointRow,
        name: str | None,
        blob: str,
        sha256: str,
        meta: dict[str, str],
        written: list[str],
    ) -> None:
        """One file of the point into ``blob``, streamed and checked, then its ``.sha256`` blob."""
        from azure.storage.blob import ContentSettings

        digest = hashlib.sha256()

        async def chunks() -> AsyncIterator[bytes]:
            async for chunk in self.points.read(rp, name):
                digest.update(chunk)
                yield chunk

        await _put(container, target, blob, chunks(), meta)  # a failed one leaves no blob
        written.append(blob)
        if digest.hexdigest() != sha256:
            raise corrupted(rp.id)
        line = f"{sha256}  {blob}\n".encode()
        await _put(
            container, target, f"{blob}.sha256", line, meta, ContentSettings(content_type="text/plain")
        )
        written.append(f"{blob}.sha256")


async def _put(
    container: Any, target: BlobTarget, name: str, data: Any, meta: dict[str, str], settings: Any = None
) -> None:
    """Put ``name`` unless it exists: If-None-Match (``overwrite=False``), on the commit of a blob
    put in blocks too, so one that appeared meanwhile is refused, not replaced."""
    exceptions = storage_exceptions()
    try:
        await container.get_blob_client(name).upload_blob(
            data, length=len(data) if isinstance(data, bytes) else None, overwrite=False, metadata=meta,
            content_settings=settings, max_concurrency=4,
        )  # fmt: skip
    except (exceptions.ResourceExistsError, exceptions.ResourceModifiedError):
        raise blob_exists(name, target) from None


async def _delete(container: Any, name: str) -> None:
    with contextlib.suppress(storage_exceptions().ResourceNotFoundError):
        await container.delete_blob(name)

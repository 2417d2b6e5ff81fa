"""The blob container engine (the Engine port's multi-file capability): vaulted backup of the
containers a backup instance lists (``BlobBackupDatasourceParameters.containersList``) and restore
of whole containers or of items, into the original or another mapped storage account.

The instance names the storage account by ARM id only; its source mapping (``dpvault sources set
<account id>``, an Azure Storage connection string) says where it is. A backup copies every block
blob of each container -- content, content settings, metadata, index tags, tier -- into the vault,
one file per blob, then the container's listing (``listing.py``). A blob whose ETag equals the one
the previous point recorded is not read at all: its stored copy is reused, so a backup reads and
transfers only what changed. Each blob is read at the ETag the listing shows (If-Match), so the
listing and the bytes agree; a blob changed meanwhile is re-read at its new version, one deleted
meanwhile is left out. Small blobs are fetched ahead, several at a time; large ones stream, so
memory stays flat.

A restore writes each selected blob with If-None-Match (never overwriting a blob it did not write;
one already there with the same size, Content-MD5, metadata and content settings is left as it is,
any other fails the restore before anything is written), its bytes checked against the point's
SHA-256 before the upload is committed (a blob's Content-MD5 is a property Azure keeps as a client
set it, right or wrong: it comes back as it was). While a restore writes, each blob it writes and
each container it creates carries its job's id in the metadata key ``dpvaultrestorejob`` (removed
once all are written), so a re-run after a crash replaces its own work and nothing else; a failed
restore deletes what it wrote, and one that gave up after its attempts what still carries its id
(``abandon``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import hashlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dpvault.engines.base import Fingerprint, Params, PointFiles, SourceFile
from dpvault.engines.blobs import criteria
from dpvault.engines.blobs.client import account_name, service_client
from dpvault.engines.blobs.client import exceptions as _exceptions
from dpvault.engines.blobs.client import storage_errors as _storage_errors
from dpvault.engines.blobs.listing import (
    BlobRecord,
    Listing,
    blob_file,
    decode,
    encode,
    is_listing,
    listing_name,
)
from dpvault.errors import UserError
from dpvault.model.instances.schema import (
    BackupInstance,
    BlobBackupDatasourceParameters,
    BlobBackupDatasourceParametersForAutoProtection,
    Datasource,
)

SMALL = 1 << 20  # blobs up to this size are fetched ahead, whole
LIST_PAGE = 1000  # blobs listed per request (Azure's most is 5000)
AHEAD = 16  # fetches (and restore uploads) in flight at once: at most AHEAD x SMALL bytes held
OWNER_KEY = "dpvaultrestorejob"
_SKIPPED_TIERS = {"archive"}  # Azure's vaulted backup does not take archived blobs either


def _container_missing(account: str, container: str) -> UserError:
    return UserError(
        "UserErrorContainerNotFound",
        f"Container '{container}' does not exist in storage account '{account}'.",
        "Create the container, or remove it from containersList (BlobBackupDatasourceParameters).",
    )


def _etag(value: Any) -> str:
    """An ETag as a listing shows it: a download's response header quotes it, a listing does not
    (compared as they come, a blob changed during one backup would be read again at the next)."""
    return str(value).strip('"')


def _value(enum: Any) -> str:
    """An SDK enum's value (``BlobType.BLOCKBLOB`` -> "BlockBlob"), or "" for None."""
    return str(getattr(enum, "value", enum) or "")


def _record(props: Any, container: str, tags: dict[str, str] | None = None) -> BlobRecord:
    settings = props.content_settings
    md5 = settings.content_md5
    tier = props.blob_tier
    return BlobRecord(
        name=props.name, size=int(props.size), etag=_etag(props.etag), file=blob_file(container, props.name),
        content_type=settings.content_type, content_encoding=settings.content_encoding,
        content_language=settings.content_language, content_disposition=settings.content_disposition,
        cache_control=settings.cache_control,
        content_md5=base64.b64encode(bytes(md5)).decode() if md5 else None,
        metadata=dict(props.metadata or {}), tags=dict(tags if tags is not None else (props.tags or {})),
        tier=_value(tier) or None,
    )  # fmt: skip


@dataclass
class Survey:
    taken: list[str] = field(default_factory=list)
    same: set[tuple[str, str]] = field(default_factory=set)
    missing: set[str] = field(default_factory=set)
    mine: set[tuple[str, str]] = field(default_factory=set)
    my_containers: set[str] = field(default_factory=set)  # created by an earlier attempt of this job


class BlobContainerEngine:
    name = "azure-blob-containers"
    datasource_types = frozenset({"microsoft.storage/storageaccounts/blobservices"})
    archive_format = "blobs + container listings"
    stream_format = "blobs + container listings (listing format 1)"
    uses_source_mapping = True  # the account is named by ARM id: its mapping has the connection string
    restores_as_files = False  # blobs go back into a storage account, not into archive files
    checks_files = False  # a blob's bytes are whatever they are: only their hash is recorded
    restores_items = True  # ItemLevelRestoreTargetInfo: containers or blobs by prefix or name range

    def __init__(self, *, connect_timeout: int = 10) -> None:
        self.connect_timeout = connect_timeout

    @property
    def tool_version(self) -> str | None:
        with contextlib.suppress(ImportError):
            from azure.storage.blob import __version__

            return f"azure-storage-blob {__version__}"
        return None

    # -- connecting ----------------------------------------------------------------------------

    def parse_secret(self, value: str) -> Params:
        try:
            account = account_name(value)
        except ValueError:
            raise UserError(
                "UserErrorInvalidConnectionString",
                "The storage account's mapping is not an Azure Storage connection string.",
                "Map the account again with its connection string (dpvault sources set <account id>).",
            ) from None
        return {"connection_string": value.strip(), "account": account}

    def _client(self, params: Params) -> Any:
        return service_client(params["connection_string"], connect_timeout=self.connect_timeout)

    def instance_params(self, instance: BackupInstance) -> Params:
        """The containers of the instance's ``BlobBackupDatasourceParameters`` (newline-separated:
        container names have none), or the exclusions of ``…ForAutoProtection``."""
        parameters = instance.policyInfo.policyParameters
        found: list[str] = []
        listed = False
        auto: list[str] | None = None
        for item in (parameters.backupDatasourceParametersList or []) if parameters else []:
            if isinstance(item, BlobBackupDatasourceParameters):
                listed = True
                found += [c.strip() for c in item.containersList]
            elif isinstance(item, BlobBackupDatasourceParametersForAutoProtection):
                listed = True
                settings = item.autoProtectionSettings
                if settings.get("enabled"):  # every container but those an Exclude rule's prefix names
                    rules = settings.get("rules") or []
                    auto = [
                        str(r.get("pattern") or "") for r in rules if isinstance(r, dict) and r.get("pattern")
                    ]
        # No datasource parameters at all: an operational backup (Azure's in-account point-in-time
        # restore), which lists no containers; a vaulted one must list some (or protect them all).
        params = {
            "containers": "\n".join(dict.fromkeys(c for c in found if c)),
            "vaulted": "1" if listed else "",
        }
        if auto is not None:
            params["auto_exclude"] = "\n".join(auto) or "\n"
        return params

    async def _containers_of(self, service: Any, params: Params) -> list[str]:
        """The containers a backup takes: the listed ones, and with auto-protection every container of
        the account whose name starts with no excluded prefix."""
        names = [c for c in params.get("containers", "").split("\n") if c]
        if "auto_exclude" in params:
            excluded = tuple(p for p in params["auto_exclude"].split("\n") if p)
            async for container in service.list_containers():
                if container.name.startswith("$"):
                    continue  # $logs, $web, $root: the account's own containers
                if not (excluded and container.name.startswith(excluded)) and container.name not in names:
                    names.append(container.name)
        return self._containers({**params, "containers": "\n".join(names)})

    @staticmethod
    def _containers(params: Params) -> list[str]:
        names = [c for c in params.get("containers", "").split("\n") if c]
        if not names:
            raise UserError(
                "UserErrorNoContainersSelectedForOperation",
                "The backup instance selects no container to back up.",
                "List the containers in policyInfo.policyParameters.backupDatasourceParametersList "
                '([{"objectType": "BlobBackupDatasourceParameters", "containersList": [...]}]).',
            )
        for name in names:
            if not criteria.CONTAINER.match(name):
                raise UserError(
                    "UserErrorContainerNotFound",
                    f"'{name[:100]}' is not a container name (3-63 lower-case letters, digits and hyphens).",
                    "Correct containersList.",
                )
        return names

    # -- validation and backup -----------------------------------------------------------------

    async def validate(self, params: Params, datasource: Datasource) -> None:
        """Reachable with the mapped credentials, and every listed container exists (an operational
        backup lists none: the account answering is all there is to check)."""
        account = params.get("account", "")
        exceptions = _exceptions()
        if not params.get("vaulted") and not params.get("containers"):  # operational: the account answers
            async with self._client(params) as service, _storage_errors(account):
                async for _ in service.list_containers(results_per_page=1):
                    break
            return
        async with self._client(params) as service, _storage_errors(account):
            for name in await self._containers_of(service, params):
                try:
                    await service.get_container_client(name).get_container_properties()
                except exceptions.ResourceNotFoundError:
                    raise _container_missing(account, name) from None

    async def dump_files(self, params: Params, previous: Mapping[str, str]) -> AsyncIterator[SourceFile]:
        account = params.get("account", "")
        exceptions = _exceptions()
        async with self._client(params) as service:
            async with _storage_errors(account):
                names = await self._containers_of(service, params)
            for name in names:
                container = service.get_container_client(name)
                async with _storage_errors(account):
                    try:
                        props = await container.get_container_properties()
                    except exceptions.ResourceNotFoundError:
                        raise _container_missing(account, name) from None
                # a page of the listing at a time: the SDK's properties of a listed blob take ~10 KB,
                # a record a few hundred bytes (what a container of millions of blobs needs)
                pages = container.list_blobs(
                    include=["metadata", "tags"], results_per_page=LIST_PAGE
                ).by_page()
                records: list[BlobRecord] = []
                while True:
                    async with _storage_errors(account):
                        try:
                            page = await anext(pages)
                        except StopAsyncIteration:
                            break
                        listed = [
                            p
                            async for p in page
                            if _value(p.blob_type).lower() == "blockblob"
                            and _value(p.blob_tier).lower() not in _SKIPPED_TIERS
                        ]
                    async for item, record in _fetch(container, name, listed, previous, account):
                        records.append(record)
                        yield item
                listing = Listing(container=name, metadata=dict(props.metadata or {}), blobs=records)
                yield SourceFile(listing_name(name), _once(encode(listing)))

    def point_details(self, checks: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
        """The containers the point holds (its metaData), its blobs and how many were reused unread."""
        listings = [n for n in checks if is_listing(n)]
        reused = sum(1 for c in checks.values() if c.get("reused"))
        containers = sorted(n.removesuffix(".listing") for n in listings)
        return {"containers": containers, "blobs": len(checks) - len(listings), "reusedBlobs": reused}

    async def check_file(self, name: str, chunks: AsyncIterator[bytes]) -> dict[str, Any]:
        async for _ in chunks:
            pass
        return {}

    # -- restore -------------------------------------------------------------------------------

    def restore_params(self, params: Params, target: Datasource) -> Params:
        return params

    def check_restore_request(self, target: dict[str, Any]) -> None:
        """The request's own mistakes (criteria shapes, a bad renameTo), said at the request."""
        criteria.check_shape(target)

    async def _plan(
        self, files: PointFiles, target: dict[str, Any]
    ) -> tuple[list[criteria.Placement], dict[str, dict[str, str]]]:
        """The blobs to restore and where, and each backed-up container's metadata."""
        listings: dict[str, Listing] = {}
        for name in files.names:
            if is_listing(name):
                data = b"".join([chunk async for chunk in files.read(name)])
                listing = decode(data)
                listings[listing.container] = listing
        return criteria.select(target, listings), {c: x.metadata for c, x in listings.items()}

    async def _survey(self, service: Any, plan: list[criteria.Placement], owner: str | None) -> Survey:
        """What the target holds of the plan: blobs that exist with other content (conflicts), ones
        that exist with the same content (Content-MD5 and size: left as they are), containers to
        create, and blobs this job wrote before (a re-run after a crash)."""
        exceptions = _exceptions()
        wanted: dict[str, dict[str, BlobRecord]] = {}
        for p in plan:
            wanted.setdefault(p.target, {})[p.record.name] = p.record
        survey = Survey()
        for target, records in wanted.items():
            container = service.get_container_client(target)
            try:
                props = await container.get_container_properties()
            except exceptions.ResourceNotFoundError:
                survey.missing.add(target)
                continue
            if owner is not None and (props.metadata or {}).get(OWNER_KEY) == owner:
                survey.my_containers.add(target)
            async for blob in container.list_blobs(include=["metadata", "tags"]):
                record = records.get(blob.name)
                if record is None:
                    continue
                if owner is not None and (blob.metadata or {}).get(OWNER_KEY) == owner:
                    survey.mine.add((target, blob.name))
                elif _same(blob, record):
                    survey.same.add((target, blob.name))
                else:
                    survey.taken.append(f"{target}/{blob.name}")
        return survey

    async def check_restore(self, files: PointFiles, params: Params, target: dict[str, Any]) -> None:
        plan, _ = await self._plan(files, target)
        async with self._client(params) as service, _storage_errors(params.get("account", "")):
            survey = await self._survey(service, plan, None)
        if survey.taken:
            raise _exists(survey.taken)

    async def restore_files(
        self, files: PointFiles, params: Params, target: dict[str, Any], *, owner: str
    ) -> dict[str, str]:
        account = params.get("account", "")
        plan, listings_metadata = await self._plan(files, target)
        written: list[tuple[str, str, dict[str, str]]] = []
        created: list[str] = []
        async with self._client(params) as service, _storage_errors(account):
            survey = await self._survey(service, plan, owner)
            created.extend(sorted(survey.my_containers))
            if survey.taken:
                # nothing of this job stays: what an earlier attempt of it wrote goes too
                with contextlib.suppress(Exception):
                    await asyncio.shield(_undo(service, [(c, n, {}) for c, n in survey.mine], created))
                raise _exists(survey.taken)
            todo = [p for p in plan if (p.target, p.record.name) not in survey.same]
            sources = {p.target: p.source for p in plan}
            try:
                for name in sorted(survey.missing):
                    # marked as this job's until it is done, like its blobs (a re-run takes it as its own)
                    await service.get_container_client(name).create_container(
                        metadata={**listings_metadata.get(sources[name], {}), OWNER_KEY: owner}
                    )
                    created.append(name)
                await _upload_all(service, files, todo, owner, survey.mine, written)
                await _unmark(service, written)
                for name in created:
                    await service.get_container_client(name).set_container_metadata(
                        listings_metadata.get(sources[name], {})
                    )
            except BaseException:
                with contextlib.suppress(Exception):
                    await asyncio.shield(
                        _undo(service, written + [(c, n, {}) for c, n in survey.mine], created)
                    )
                raise
        containers = sorted({p.target for p in plan})
        return {
            "RestoredBlobs": str(len(todo)),
            "RestoredBytes": str(sum(p.record.size for p in todo)),
            "AlreadyPresentBlobs": str(len(plan) - len(todo)),
            "TargetContainers": ",".join(containers),
            "CreatedContainers": ",".join(created),
            "StorageAccount": account,
        }

    async def release(self, params: Params, owner: str) -> None:
        """Nothing to do: the marks went before the restore reported its blobs (see ``_unmark``)."""
        return None

    async def abandon(self, params: Params, owner: str) -> None:
        """A restore that gave up after its attempts: the blobs still carrying its mark go, then the
        containers it created (marked too), in every container of the target account."""
        exceptions = _exceptions()
        async with self._client(params) as service, _storage_errors(params.get("account", "")):
            async for c in service.list_containers(include_metadata=True):
                container = service.get_container_client(c.name)
                async for blob in container.list_blobs(include=["metadata"]):
                    if (blob.metadata or {}).get(OWNER_KEY) == owner:
                        with contextlib.suppress(exceptions.ResourceNotFoundError):
                            await container.delete_blob(blob.name)
                if (c.metadata or {}).get(OWNER_KEY) == owner:
                    with contextlib.suppress(exceptions.ResourceNotFoundError):
                        await container.delete_container()

    # -- the single-archive parts of the port: containers are not one archive -------------------

    def dump(self, params: Params, *, fingerprint: bool = False, compress: bool = True) -> Any:
        raise _not_here("a single-archive dump")

    async def check(self, chunks: Any) -> dict[str, Any]:
        raise _not_here("an archive check")

    async def check_target(self, params: Params) -> None:
        raise _not_here("a single-archive restore")

    async def restore(self, archive: Path, params: Params, *, owner: str | None = None) -> dict[str, str]:
        raise _not_here("a single-archive restore")

    async def drill(self, archive: Path, params: Params, *, owner: str) -> Fingerprint:
        raise _not_here("a restore drill")


def _not_here(what: str) -> UserError:
    return UserError(
        "UserErrorRestoreTargetNotSupported",
        f"A blob backup holds containers: {what} is not supported for it.",
        "Restore with RestoreTargetInfo (whole containers) or ItemLevelRestoreTargetInfo (items).",
    )


def _same(blob: Any, record: BlobRecord) -> bool:
    """A target blob that is the backed-up one already: the original, unchanged since the backup
    (its ETag is the recorded one: blobs put in blocks have no Content-MD5), or a copy with the same
    Content-MD5 (a re-run's blob whose mark went); same size, metadata, index tags and content
    settings too (setting tags leaves the ETag as it was, so they are compared on their own)."""
    settings = blob.content_settings
    md5 = settings.content_md5
    same_bytes = _etag(blob.etag) == record.etag or bool(
        record.content_md5 and md5 and base64.b64encode(bytes(md5)).decode() == record.content_md5
    )
    return bool(
        same_bytes
        and int(blob.size) == record.size
        and (base64.b64encode(bytes(md5)).decode() if md5 else None) == record.content_md5
        and dict(blob.metadata or {}) == record.metadata
        and dict(blob.tags or {}) == dict(record.tags or {})
        and (settings.content_type, settings.content_encoding, settings.content_language,
             settings.content_disposition, settings.cache_control)
        == (record.content_type, record.content_encoding, record.content_language,
            record.content_disposition, record.cache_control)
    )  # fmt: skip


def _exists(taken: list[str]) -> UserError:
    shown = ", ".join(sorted(taken)[:5]) + (f" and {len(taken) - 5} more" if len(taken) > 5 else "")
    return UserError(
        "UserErrorBlobAlreadyExists",
        f"{len(taken)} blob(s) to restore exist already in the target: {shown}. Nothing was restored.",
        "Restore into another container (renameTo) or another storage account, or delete those blobs.",
    )


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _fetch(
    container: Any, name: str, listed: list[Any], previous: Mapping[str, str], account: str
) -> AsyncIterator[tuple[SourceFile, BlobRecord]]:
    """Each listed blob as a point file (unchanged ones as reuses), small ones fetched ahead."""
    exceptions = _exceptions()
    from azure.core import MatchConditions

    async def whole(props: Any) -> tuple[Any, bytes] | None:
        """(the properties of the version read, its bytes); None if the blob went meanwhile."""
        blob = container.get_blob_client(props.name)
        async with _storage_errors(account):
            try:
                stream = await blob.download_blob(
                    etag=props.etag, match_condition=MatchConditions.IfNotModified
                )
                return props, await stream.readall()
            except exceptions.ResourceModifiedError:  # changed since the listing: take the new version
                pass
            except exceptions.ResourceNotFoundError:
                return None
            try:
                stream = await blob.download_blob()
                data = await stream.readall()
                tags = await blob.get_blob_tags()
            except exceptions.ResourceNotFoundError:
                return None
        fresh = stream.properties
        fresh.tags = tags
        fresh.blob_tier = fresh.blob_tier or props.blob_tier  # a download's answer has no tier
        return fresh, data

    todo = [p for p in listed if previous.get(blob_file(name, p.name)) != _etag(p.etag)]
    small = [p for p in todo if int(p.size) <= SMALL]
    ahead: dict[str, asyncio.Task[tuple[Any, bytes] | None]] = {}
    next_small = 0
    try:
        for props in listed:
            file = blob_file(name, props.name)
            if previous.get(file) == _etag(props.etag):
                yield SourceFile(file, None, _etag(props.etag)), _record(props, name)
                continue
            while next_small < len(small) and len(ahead) < AHEAD:
                p = small[next_small]
                ahead[p.name] = asyncio.create_task(whole(p))
                next_small += 1
            if props.name in ahead:
                got = await ahead.pop(props.name)
                if got is None:
                    continue
                fresh, data = got
                yield SourceFile(file, _once(data), _etag(fresh.etag)), _record(fresh, name, fresh.tags)
                continue
            opened = await _open_large(container, props, account)
            if opened is None:
                continue
            fresh, stream = opened
            yield (
                SourceFile(file, _streamed(stream, account, props.name), _etag(fresh.etag)),
                _record(fresh, name, fresh.tags),
            )
    finally:
        for task in ahead.values():
            task.cancel()
        for task in ahead.values():
            with contextlib.suppress(BaseException):
                await task


async def _streamed(stream: Any, account: str, name: str) -> AsyncIterator[bytes]:
    """A large blob's chunks, its storage errors the user's: one rewritten while it is read (the
    download is pinned to its first version) is retried with the job, then named."""
    exceptions = _exceptions()
    async with _storage_errors(account):
        try:
            async for chunk in stream.chunks():
                yield chunk
        except exceptions.ResourceModifiedError:
            raise UserError(
                "UserErrorBlobChangedDuringBackup",
                f"Blob '{name[:200]}' was rewritten while it was being backed up.",
                "Back up again when the blob is not being written.",
                retryable=True,
            ) from None


async def _open_large(container: Any, props: Any, account: str) -> tuple[Any, Any] | None:
    """A large blob's download, at the listed version (else its current one), to be streamed."""
    exceptions = _exceptions()
    from azure.core import MatchConditions

    blob = container.get_blob_client(props.name)
    async with _storage_errors(account):
        try:
            stream = await blob.download_blob(etag=props.etag, match_condition=MatchConditions.IfNotModified)
            props.tags = props.tags or {}
            return props, stream
        except exceptions.ResourceModifiedError:
            pass
        except exceptions.ResourceNotFoundError:
            return None
        try:
            stream = await blob.download_blob()
            tags = await blob.get_blob_tags()
        except exceptions.ResourceNotFoundError:
            return None
    fresh = stream.properties
    fresh.tags = tags
    fresh.blob_tier = fresh.blob_tier or props.blob_tier  # a download's answer has no tier
    # the download pins the version it started at (If-Match on its later ranges)
    return fresh, stream


async def _upload_all(
    service: Any,
    files: PointFiles,
    plan: list[criteria.Placement],
    owner: str,
    mine: set[tuple[str, str]],
    written: list[tuple[str, str, dict[str, str]]],
) -> None:
    """Upload every placement, AHEAD at a time; the first failure stops the rest."""
    gate = asyncio.Semaphore(AHEAD)

    async def one(p: criteria.Placement) -> None:
        async with gate:
            await _upload(service, files, p, owner, overwrite=(p.target, p.record.name) in mine)
            written.append((p.target, p.record.name, dict(p.record.metadata)))

    try:
        async with asyncio.TaskGroup() as group:
            for p in plan:
                group.create_task(one(p))
    except BaseExceptionGroup as group_error:  # the first user error, else the first failure
        errors = group_error.exceptions
        raise next((e for e in errors if isinstance(e, UserError)), errors[0]) from None


async def _upload(
    service: Any, files: PointFiles, p: criteria.Placement, owner: str, *, overwrite: bool
) -> None:
    from azure.storage.blob import ContentSettings, StandardBlobTier

    exceptions = _exceptions()
    r = p.record
    md5 = hashlib.md5(usedforsecurity=False)
    checked = bool(files.sha256(r.file))
    if checked and files.size(r.file) != r.size:
        raise _damaged(p)

    async def content() -> AsyncIterator[bytes]:
        async for chunk in files.read(r.file):  # raises at the end if the SHA-256 differs: no commit
            md5.update(chunk)
            yield chunk
        # the point's SHA-256 is the check; a blob's Content-MD5 is only a property (Azure keeps
        # whatever a client set, right or wrong), so it decides only where no SHA-256 was recorded
        if not checked and r.content_md5 and base64.b64encode(md5.digest()).decode() != r.content_md5:
            raise _damaged(p)

    settings = ContentSettings(
        content_type=r.content_type, content_encoding=r.content_encoding, content_language=r.content_language,
        content_disposition=r.content_disposition, cache_control=r.cache_control,
        content_md5=bytearray(base64.b64decode(r.content_md5)) if r.content_md5 else None,
    )  # fmt: skip
    data: Any
    # Put Blob refuses a Content-MD5 that is not the bytes' (Azure keeps a wrong one that a client set
    # later): such a blob is put without it and gets its recorded properties set afterwards. A large
    # blob's MD5 is known only once it is read: its properties are always set afterwards.
    settings_after = False
    if r.size <= SMALL:
        data = b"".join([chunk async for chunk in content()])
        settings_after = bool(r.content_md5) and base64.b64encode(md5.digest()).decode() != r.content_md5
    else:
        data = content()
        settings_after = bool(r.content_md5)
    put_settings = copy.copy(settings)
    if settings_after:
        put_settings.content_md5 = None
    blob = service.get_blob_client(p.target, r.name)
    # cool and cold come back in the account's default tier (hot), as in Azure
    tier = StandardBlobTier.HOT if r.tier and r.tier.lower() == "hot" else None
    try:
        await blob.upload_blob(
            data, length=r.size if isinstance(data, bytes) else None, overwrite=overwrite,
            metadata={**r.metadata, OWNER_KEY: owner}, tags=r.tags or None, content_settings=put_settings,
            standard_blob_tier=tier,
        )  # fmt: skip
    except exceptions.ResourceExistsError:
        raise _exists([f"{p.target}/{r.name}"]) from None
    if settings_after:
        await blob.set_http_headers(settings)


def _damaged(p: criteria.Placement) -> UserError:
    return UserError(
        "UserErrorRecoveryPointCorrupted",
        f"The backed-up copy of '{p.source}/{p.record.name}' does not match its recorded hash; what this restore "
        "wrote was removed.",
        "Restore another recovery point; run `dpvault verify` to check the others.",
    )


async def _unmark(service: Any, written: list[tuple[str, str, dict[str, str]]]) -> None:
    """Every blob written: its metadata becomes the backed-up one (the job's mark goes) before the
    restore reports them. A crash between here and the job's completion leaves a re-run blobs
    without the mark: those with a Content-MD5 are recognised as already restored; a large blob
    without one is then a conflict (the re-run fails, naming it)."""
    gate = asyncio.Semaphore(AHEAD)

    async def unmark(container: str, name: str, metadata: dict[str, str]) -> None:
        async with gate:
            await service.get_blob_client(container, name).set_blob_metadata(metadata)

    await asyncio.gather(*(unmark(c, n, m) for c, n, m in written))


async def _undo(service: Any, written: list[tuple[str, str, dict[str, str]]], created: list[str]) -> None:
    """A failed restore: the blobs it wrote and the containers it created go."""
    for container, name, _ in written:
        with contextlib.suppress(Exception):
            await service.get_blob_client(container, name).delete_blob()
    for container in created:
        with contextlib.suppress(Exception):
            await service.get_container_client(container).delete_container()

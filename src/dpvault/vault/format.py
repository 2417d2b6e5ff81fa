"""The vault format (format 1; docs/design/vault-format.md is its contract): keys and manifests.

A recovery point is two objects under its vault's and instance's directory: the archive
(``<rp>.dump``, as the engine wrote it) and its manifest (``<rp>.json``). Keys are hashes of ids and
UUIDs, never names from requests. Readers refuse a manifest whose format they do not know.
"""

from __future__ import annotations

import hashlib

import msgspec

from dpvault.datastores.base import Datastore, ObjectNotFoundError, put_bytes, read_bytes
from dpvault.errors import DpvaultError

FORMAT = 1
KNOWN_FORMATS = frozenset({1})


class UnsupportedFormatError(DpvaultError):
    """A manifest of a vault format this version cannot read."""

    def __init__(self, found: object) -> None:
        super().__init__(f"unsupported vault format {found!r}")
        self.found = found


class ManifestMissingError(DpvaultError):
    """A recovery point without its manifest (or with one that is not a manifest)."""


class Manifest(msgspec.Struct):
    """What a recovery point's archive is. Field order and names are format 1's, on disk."""

    format: int
    recoveryPointId: str
    instance: str
    sha256: str
    size: int
    engine: str
    pgDumpVersion: str | None
    tables: int


class _FormatOnly(msgspec.Struct):
    format: object = None


def point_prefix(vault_key: str, instance_key: str) -> str:
    """The directory of an instance's points: hashes of the ids, so no request input reaches a key."""
    v = hashlib.sha256(vault_key.encode()).hexdigest()[:24]
    i = hashlib.sha256(instance_key.encode()).hexdigest()[:24]
    return f"{v}/{i}"


def archive_key(vault_key: str, instance_key: str, rp_id: str) -> str:
    return f"{point_prefix(vault_key, instance_key)}/{rp_id}.dump"


def manifest_key(archive: str) -> str:
    """The manifest written beside an archive."""
    return archive.removesuffix(".dump") + ".json"


def keys_of(archive: str) -> tuple[str, str]:
    """Every object of the point whose archive is ``archive``."""
    return archive, manifest_key(archive)


def encode(manifest: Manifest) -> bytes:
    return msgspec.json.encode(manifest)


def decode(data: bytes) -> Manifest:
    """A manifest; UnsupportedFormatError for a format this version does not know (before anything
    else of it is read), ManifestMissingError for bytes that are not a manifest."""
    try:
        found = msgspec.json.decode(data, type=_FormatOnly).format
    except msgspec.MsgspecError:
        raise ManifestMissingError("the manifest is not JSON") from None
    if found not in KNOWN_FORMATS:
        raise UnsupportedFormatError(found)
    try:
        return msgspec.json.decode(data, type=Manifest)
    except msgspec.MsgspecError as exc:
        raise ManifestMissingError(f"the manifest is malformed: {exc}") from None


async def write_manifest(store: Datastore, archive: str, manifest: Manifest, *, writer: str) -> None:
    await put_bytes(store, manifest_key(archive), encode(manifest), writer=writer)


async def read_manifest(store: Datastore, archive: str) -> Manifest:
    try:
        data = await read_bytes(store, manifest_key(archive), limit=1 << 20)
    except ObjectNotFoundError:
        raise ManifestMissingError("the manifest is missing") from None
    except ValueError:
        raise ManifestMissingError("the manifest is not a manifest (too large)") from None
    return decode(data)

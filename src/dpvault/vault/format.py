"""The vault format (docs/design/vault-format.md is its contract): where objects live, manifests, and
the format number readers check. Format 2 is written; format 1 stays readable.

- **Format 1**: a recovery point is two objects under its instance's directory, the engine's
  archive as written (``<rp>.dump``) and a plain JSON manifest (``<rp>.json``).
- **Format 2**: the engine's stream is cut into content-defined chunks, each compressed (zstd) and
  sealed (AES-256-GCM) under the vault's data key and stored once per vault in pack objects
  (``packs/``, see ``packs.py``); a recovery point is one sealed manifest (``points/.../<rp>.manifest``)
  listing its files and their chunks.

Keys are hashes of ids and UUIDs, never names from requests. Every manifest starts with its
``format``; readers refuse a format they do not know before reading anything else of it.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any, Protocol

import msgspec

from dpvault.datastores.base import Datastore, ObjectNotFoundError, put_bytes, read_bytes
from dpvault.errors import DpvaultError

FORMAT = 2  # what backups write
KNOWN_FORMATS = frozenset({1, 2})


class UnsupportedFormatError(DpvaultError):
    """A manifest of a vault format this version cannot read."""

    def __init__(self, found: object) -> None:
        super().__init__(f"unsupported vault format {found!r}")
        self.found = found


class ManifestMissingError(DpvaultError):
    """A recovery point without its manifest (or with one that is not a manifest)."""


class Sealer(Protocol):
    """A vault's data key, as manifests need it (``keys.DataKey``)."""

    key_id: str

    def seal(self, plaintext: bytes, aad: bytes) -> bytes: ...

    def open(self, sealed: bytes | memoryview, aad: bytes) -> bytes: ...


# -- format 1 ---------------------------------------------------------------------------------


class Manifest(msgspec.Struct):
    """Format 1: what a recovery point's archive is. Field order and names are format 1's, on disk."""

    format: int
    recoveryPointId: str
    instance: str
    sha256: str
    size: int
    engine: str
    pgDumpVersion: str | None
    tables: int


# -- format 2 ---------------------------------------------------------------------------------


class FileEntry(msgspec.Struct, omit_defaults=True):
    """One file of a recovery point: its plaintext size and SHA-256, and its chunks in order;
    ``version``: what the source said of it (a blob's ETag), so the next backup can reuse it unread."""

    name: str
    size: int
    sha256: str
    chunks: list[str]
    version: str | None = None


class PointManifest(msgspec.Struct, kw_only=True):
    """Format 2: a recovery point (sealed inside an Envelope)."""

    format: int = 2
    recoveryPointId: str
    instance: str
    engine: str
    engineVersion: str | None = None
    details: dict[str, Any] = {}
    files: list[FileEntry]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def sha256(self) -> str:
        """What the recovery point's row records: its one file's SHA-256, or for several files the
        SHA-256 of their names and digests."""
        if len(self.files) == 1:
            return self.files[0].sha256
        return hashlib.sha256("".join(f"{f.name}\0{f.sha256}\n" for f in self.files).encode()).hexdigest()


class Envelope(msgspec.Struct):
    """A sealed format-2 manifest as stored: the format first, in the clear."""

    format: int
    keyId: str
    sealed: str


class _FormatOnly(msgspec.Struct):
    format: object = None


# -- keys ---------------------------------------------------------------------------------------


def _h(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:24]


def point_prefix(vault_key: str, instance_key: str) -> str:
    """Format 1: the directory of an instance's points."""
    return f"{_h(vault_key)}/{_h(instance_key)}"


def archive_key(vault_key: str, instance_key: str, rp_id: str) -> str:
    """Format 1: a point's archive."""
    return f"{point_prefix(vault_key, instance_key)}/{rp_id}.dump"


def manifest_key(archive: str) -> str:
    """Format 1: the manifest written beside an archive."""
    return archive.removesuffix(".dump") + ".json"


def vault_prefix(vault_key: str) -> str:
    return _h(vault_key)


def point_manifest_key(vault_key: str, instance_key: str, rp_id: str) -> str:
    """Format 2: a point's sealed manifest (the row's ``object_key``)."""
    return f"{_h(vault_key)}/points/{_h(instance_key)}/{rp_id}.manifest"


def packs_prefix(vault_key: str) -> str:
    return f"{_h(vault_key)}/packs/"


def pack_key(vault_key: str, pack_id: str) -> str:
    return f"{packs_prefix(vault_key)}{pack_id[:2]}/{pack_id}.pack"


def key_object(vault_key: str, key_id: str) -> str:
    """Format 2: the copy of a vault's wrapped data key."""
    return f"{_h(vault_key)}/keys/{key_id}.json"


def format_of(object_key: str) -> int:
    """Which format a point is, from its row's ``object_key``."""
    return 2 if object_key.endswith(".manifest") else 1


def keys_of(object_key: str) -> tuple[str, ...]:
    """The objects that belong to one point alone (format 2 points share their packs)."""
    if format_of(object_key) == 2:
        return (object_key,)
    return object_key, manifest_key(object_key)


# -- manifests ----------------------------------------------------------------------------------


def _format_first(data: bytes) -> object:
    try:
        found = msgspec.json.decode(data, type=_FormatOnly).format
    except msgspec.MsgspecError:
        raise ManifestMissingError("the manifest is not JSON") from None
    if found not in KNOWN_FORMATS:
        raise UnsupportedFormatError(found)
    return found


def decode(data: bytes) -> Manifest:
    """A format-1 manifest; UnsupportedFormatError for a format this version does not know,
    ManifestMissingError for bytes that are not a manifest."""
    if _format_first(data) != 1:
        raise ManifestMissingError("not a format-1 manifest")
    try:
        return msgspec.json.decode(data, type=Manifest)
    except msgspec.MsgspecError as exc:
        raise ManifestMissingError(f"the manifest is malformed: {exc}") from None


def encode(manifest: Manifest) -> bytes:
    return msgspec.json.encode(manifest)


def seal_manifest(manifest: PointManifest, key: Sealer) -> bytes:
    sealed = key.seal(msgspec.json.encode(manifest), _manifest_aad(manifest.recoveryPointId))
    return msgspec.json.encode(Envelope(format=2, keyId=key.key_id, sealed=base64.b64encode(sealed).decode()))


def envelope(data: bytes) -> Envelope:
    """The clear part of a format-2 manifest (which data key opens it)."""
    if _format_first(data) != 2:
        raise ManifestMissingError("not a format-2 manifest")
    try:
        return msgspec.json.decode(data, type=Envelope)
    except msgspec.MsgspecError as exc:
        raise ManifestMissingError(f"the manifest is malformed: {exc}") from None


def open_manifest(found: Envelope, key: Sealer, rp_id: str) -> PointManifest:
    """The manifest sealed in ``found``; SealError (keys.py) if it does not authenticate."""
    if found.keyId != key.key_id:
        raise ManifestMissingError(f"the manifest was sealed with data key {found.keyId}, not the vault's")
    plain = key.open(base64.b64decode(found.sealed), _manifest_aad(rp_id))
    try:
        return msgspec.json.decode(plain, type=PointManifest)
    except msgspec.MsgspecError as exc:
        raise ManifestMissingError(f"the manifest is malformed: {exc}") from None


def _manifest_aad(rp_id: str) -> bytes:
    return f"dpvault-manifest:{rp_id}".encode()


async def write_manifest(store: Datastore, archive: str, manifest: Manifest, *, writer: str) -> None:
    """Format 1 (tests lay down format-1 points with it)."""
    await put_bytes(store, manifest_key(archive), encode(manifest), writer=writer)


async def read_object(store: Datastore, key: str) -> bytes:
    try:
        return await read_bytes(store, key, limit=64 << 20)
    except ObjectNotFoundError:
        raise ManifestMissingError("the manifest is missing") from None
    except ValueError:
        raise ManifestMissingError("the manifest is not a manifest (too large)") from None


async def read_manifest(store: Datastore, archive: str) -> Manifest:
    """A format-1 point's manifest."""
    return decode(await read_object(store, manifest_key(archive)))

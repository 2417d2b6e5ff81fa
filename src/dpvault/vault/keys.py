"""Keys of a format-2 vault (docs/design/vault-format.md, "Keys").

Each backup vault has its own **data key** -- 32 bytes for AES-256-GCM and 32 bytes for the keyed
hash (HMAC-SHA256) that names chunks -- generated on its first format-2 backup and **wrapped** by a
key-encryption key (KEK):

- by default the data dir's own KEK (``<data-dir>/identity/vault.kek``, or ``DPVAULT_VAULT_KEK``),
  kept apart from the state database;
- when the vault's ``securitySettings.encryptionSettings.keyVaultProperties.keyUri`` names a key,
  the key stored for that URI with ``dpvault keys set URI`` (tenant-scoped, like secrets): the
  emulation of a customer-managed key.

The wrapped key is recorded in the state database (the authority, so concurrent first backups agree
on one key) and copied into the vault datastore (``keys/<key-id>.json``), so the vault can be read
back with its KEK alone. Losing the KEK makes the vault unreadable. No key, and no plaintext, is
ever written to the datastore or a log.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dpvault.datastores.base import Datastore, put_bytes
from dpvault.errors import DpvaultError
from dpvault.identity.files import write_private
from dpvault.store import Store
from dpvault.vault.format import key_object

KEK_ENV = "DPVAULT_VAULT_KEK"
KEK_FILE = "vault.kek"
NONCE = 12


class KeyUnavailableError(DpvaultError):
    """The key-encryption key a vault needs is not there (or is not the one the data key was wrapped with)."""


class SealError(DpvaultError):
    """Ciphertext that does not authenticate: changed, truncated, or sealed under another key."""


@dataclass(frozen=True)
class KekRef:
    """Which KEK wraps a vault's data key: the data dir's own (``uri`` None) or a stored key's."""

    uri: str | None = None
    tenant: str | None = None

    @property
    def label(self) -> str:
        return "local" if self.uri is None else f"keyUri {self.uri}"


class KekSource(Protocol):
    async def get(self, uri: str, tenant: str) -> str | None:
        """The stored key for ``uri`` (base64 of 32 bytes) in ``tenant``'s key store, or None."""
        ...


def load_local_kek(identity_dir: Path) -> bytes:
    """The data dir's KEK: ``DPVAULT_VAULT_KEK`` (base64 of 32 bytes) if set, else a key file
    created on first use (mode 0600)."""
    env = os.environ.get(KEK_ENV)
    if env:
        return _decode_key(env, KEK_ENV)
    path = identity_dir / KEK_FILE
    if not path.exists():
        write_private(path, base64.b64encode(os.urandom(32)) + b"\n", exclusive=True)
    return _decode_key(path.read_text(), str(path))


def _decode_key(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except ValueError:
        raise KeyUnavailableError(f"{where} is not base64") from None
    if len(key) != 32:
        raise KeyUnavailableError(f"{where} does not hold a 32-byte key")
    return key


def kek_id(kek: bytes) -> str:
    """A KEK's fingerprint, recorded beside what it wraps (a wrong KEK is named, not guessed at)."""
    return hashlib.sha256(b"dpvault-kek-id:" + kek).hexdigest()[:16]


class DataKey:
    """A vault's data key: seals and opens blobs, names chunks by a keyed hash of their plaintext."""

    def __init__(self, key_id: str, material: bytes) -> None:
        if len(material) != 64:
            raise ValueError("a data key is 64 bytes")
        self.key_id = key_id
        self._aead = AESGCM(material[:32])
        self._mac = material[32:]
        self._material = material

    def chunk_id(self, plaintext: bytes | memoryview) -> str:
        return hmac.digest(self._mac, plaintext, "sha256").hex()

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        """nonce || AES-256-GCM(ciphertext || tag), bound to ``aad`` (what the blob is)."""
        nonce = os.urandom(NONCE)
        return nonce + self._aead.encrypt(nonce, plaintext, aad)

    def open(self, sealed: bytes | memoryview, aad: bytes) -> bytes:
        sealed = bytes(sealed)
        try:
            return self._aead.decrypt(sealed[:NONCE], sealed[NONCE:], aad)
        except (InvalidTag, ValueError):
            raise SealError("a sealed blob does not authenticate") from None


class WrappedKey(msgspec.Struct):
    """A data key as it is stored (in the state database and as ``keys/<key-id>.json``)."""

    format: int
    keyId: str  # noqa: N815 - stored names
    vault: str
    kek: str  # "local" or the key URI
    kekTenant: str | None  # noqa: N815
    kekId: str  # noqa: N815 - fingerprint of the KEK that wrapped it
    nonce: str
    wrapped: str


def wrap(kek: bytes, ref: KekRef, vault_key: str, material: bytes, key_id: str) -> WrappedKey:
    nonce = os.urandom(NONCE)
    sealed = AESGCM(kek).encrypt(nonce, material, _aad(vault_key, key_id))
    return WrappedKey(
        format=2, keyId=key_id, vault=vault_key, kek=ref.uri or "local", kekTenant=ref.tenant,
        kekId=kek_id(kek), nonce=base64.b64encode(nonce).decode(), wrapped=base64.b64encode(sealed).decode(),
    )  # fmt: skip


def unwrap(kek: bytes, record: WrappedKey) -> DataKey:
    if kek_id(kek) != record.kekId:
        raise KeyUnavailableError(
            f"the data key of vault {record.vault!r} was wrapped by another key-encryption key ({record.kek})"
        )
    try:
        material = AESGCM(kek).decrypt(
            base64.b64decode(record.nonce), base64.b64decode(record.wrapped), _aad(record.vault, record.keyId)
        )
    except InvalidTag:
        raise KeyUnavailableError(f"the data key of vault {record.vault!r} does not unwrap") from None
    return DataKey(record.keyId, material)


def _aad(vault_key: str, key_id: str) -> bytes:
    return f"dpvault-data-key:{vault_key}:{key_id}".encode()


def ref_of(record: WrappedKey) -> KekRef:
    return KekRef(None if record.kek == "local" else record.kek, record.kekTenant)


class VaultKeys:
    """Data keys of vaults, created on first use, cached per process."""

    def __init__(
        self, store: Store, datastore: Datastore, local_kek: bytes, stored: KekSource | None
    ) -> None:
        self.store = store
        self.datastore = datastore
        self._local = local_kek
        self._stored = stored
        self._cache: dict[str, tuple[KekRef, DataKey]] = {}

    async def kek(self, ref: KekRef) -> bytes:
        if ref.uri is None:
            return self._local
        value = await self._stored.get(ref.uri, ref.tenant or "") if self._stored else None
        if value is None:
            raise KeyUnavailableError(f"no key is stored for {ref.uri} (dpvault keys set {ref.uri})")
        return _decode_key(value, ref.uri)

    async def data_key(self, vault_key: str, want: KekRef | None = None, *, now: float) -> DataKey:
        """The vault's data key; created (wrapped by ``want``) if it has none. With ``want`` given and
        different from the KEK that wrapped it, the key is re-wrapped by ``want`` (a changed keyUri)."""
        cached = self._cache.get(vault_key)
        if cached is not None and (want is None or cached[0] == want):
            return cached[1]
        async with self.store.read() as tx:
            found = await tx.vault_key_record(vault_key)
        if found is None:
            ref = want or KekRef()
            kek = await self.kek(ref)
            key_id = str(uuid.uuid4())
            record = wrap(kek, ref, vault_key, os.urandom(64), key_id)
            encoded = msgspec.json.encode(record)
            if await self.store.transact(lambda tx: tx.insert_vault_key(vault_key, key_id, encoded, now=now)):
                await self._copy(record, encoded)
            return await self.data_key(vault_key, want, now=now)  # whoever won, read it back
        record = msgspec.json.decode(found[1], type=WrappedKey)
        ref = ref_of(record)
        key = unwrap(await self.kek(ref), record)
        if want is not None and want != ref:
            record = wrap(await self.kek(want), want, vault_key, key._material, key.key_id)
            encoded = msgspec.json.encode(record)
            await self.store.transact(lambda tx: tx.update_vault_key(vault_key, encoded, now=now))
            await self._copy(record, encoded)
            ref = want
        self._cache[vault_key] = (ref, key)
        return key

    async def _copy(self, record: WrappedKey, encoded: bytes) -> None:
        await put_bytes(self.datastore, key_object(record.vault, record.keyId), encoded)

"""The local secret store: Fernet-encrypted values in the state database, keyed by normalised URI.

The same table holds the source mappings (``dpvault sources``): connection strings keyed by a
datasource's normalised ARM id. An ARM id starts with ``/subscriptions/`` and a secret URI with
``https://``, so the keys never collide and no migration was needed; each view sees only its own
kind (a backup instance naming an ARM id as its secret URI does not read a source mapping).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.fernet import Fernet, InvalidToken

from dpvault.identity.files import write_private
from dpvault.store import Store

KEY_ENV = "DPVAULT_SECRETS_KEY"
KEY_FILE = "secrets.key"
SOURCE_PREFIX = "/subscriptions/"


def is_source_key(key: str) -> bool:
    """Whether a stored key is a source mapping's (an ARM id) rather than a secret URI."""
    return key.strip().lower().startswith(SOURCE_PREFIX)


def load_key(identity_dir: Path) -> Fernet:
    """The encryption key: ``DPVAULT_SECRETS_KEY`` if set, else a key file created on first use."""
    env = os.environ.get(KEY_ENV)
    if env:
        return Fernet(env.encode())
    path = identity_dir / KEY_FILE
    if not path.exists():
        write_private(path, Fernet.generate_key(), exclusive=True)
    return Fernet(path.read_bytes().strip())


def uri_key(uri: str) -> str:
    """Key Vault names are case-insensitive and a trailing slash means nothing."""
    return uri.strip().rstrip("/").lower()


def tenant_key(tenant: str) -> str:
    """Tenant ids are GUIDs (or names like "adfs"): compared case-insensitively."""
    return tenant.strip().lower()


def versionless(uri: str) -> str | None:
    """``https://v.vault.azure.net/secrets/name/version`` -> ``.../secrets/name`` (None if no version)."""
    parts = urlsplit(uri.strip().rstrip("/"))
    segments = parts.path.strip("/").split("/")
    if len(segments) == 3 and segments[0].lower() == "secrets":
        return f"{parts.scheme}://{parts.netloc}/secrets/{segments[1]}"
    return None


class LocalSecretStore:
    def __init__(self, store: Store, key: Fernet) -> None:
        self._store = store
        self._key = key

    async def get(self, uri: str, tenant: str) -> str | None:
        """A secret's value (never a source mapping's), or None."""
        if is_source_key(uri):
            return None
        return await self._get(uri, tenant)

    async def get_source(self, resource_id: str, tenant: str) -> str | None:
        """A source mapping's connection string for ``tenant``, or None."""
        if not is_source_key(resource_id):
            return None
        return await self._get(resource_id, tenant)

    async def _get(self, uri: str, tenant: str) -> str | None:
        candidates = [uri_key(uri)]
        base = None if is_source_key(uri) else versionless(uri)
        if base:
            candidates.append(uri_key(base))
        async with self._store.read() as tx:
            for candidate in candidates:
                ciphertext = await tx.secret(tenant_key(tenant), candidate)
                if ciphertext is not None:
                    try:
                        return self._key.decrypt(ciphertext).decode()
                    except InvalidToken:
                        raise RuntimeError(
                            "a stored secret cannot be decrypted: the secrets key is not the one it was stored with"
                        ) from None
        return None

    async def set(self, uri: str, value: str, *, tenant: str, now: float) -> None:
        ciphertext = self._key.encrypt(value.encode())
        await self._store.transact(
            lambda tx: tx.put_secret(tenant_key(tenant), uri_key(uri), uri.strip(), ciphertext, now=now)
        )

    async def delete(self, uri: str, *, tenant: str) -> bool:
        return await self._store.transact(lambda tx: tx.delete_secret(tenant_key(tenant), uri_key(uri)))

    async def list(self, tenant: str | None = None, *, sources: bool = False) -> list[tuple[str, str]]:
        """(tenant, uri) of the stored secrets, or with ``sources`` of the source mappings (ARM ids)."""
        async with self._store.read() as tx:
            rows = await tx.secret_uris(tenant_key(tenant) if tenant else None)
        return [(owner, uri) for owner, uri in rows if is_source_key(uri) == sources]

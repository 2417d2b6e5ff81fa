"""OAuth clients of the built-in issuer: ``dpvault clients add NAME`` prints an id and a secret once.

Secrets are 32 random bytes (URL-safe text); only their SHA-256 is stored, compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass

from dpvault.store import Store


@dataclass(frozen=True)
class Client:
    client_id: str
    name: str
    tenant: str


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class ClientRegistry:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def add(self, name: str, tenant: str, *, now: float) -> tuple[Client, str]:
        client_id = str(uuid.uuid4())
        secret = secrets.token_urlsafe(32)
        await self._store.transact(
            lambda tx: tx.add_client(
                client_id=client_id, name=name, tenant=tenant, secret_hash=_hash(secret), created_at=now
            )
        )
        return Client(client_id, name, tenant), secret

    async def authenticate(self, client_id: str, secret: str) -> Client | None:
        async with self._store.read() as tx:
            row = await tx.client(client_id.strip().lower())
        if row is None:
            hmac.compare_digest(_hash(secret), _hash("x"))  # same work whether or not the id exists
            return None
        if not hmac.compare_digest(row["secret_hash"], _hash(secret)):
            return None
        return Client(row["client_id"], row["name"], row["tenant"])

    async def list(self) -> list[Client]:
        async with self._store.read() as tx:
            return [Client(r["client_id"], r["name"], r["tenant"]) for r in await tx.list_clients()]

    async def delete(self, client_id: str) -> bool:
        return await self._store.transact(lambda tx: tx.delete_client(client_id.strip().lower()))

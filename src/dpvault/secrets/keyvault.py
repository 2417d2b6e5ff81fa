"""Azure Key Vault as a secret provider (``serve --key-vault``).

Uses azure-keyvault-secrets with DefaultAzureCredential (environment, managed identity, az login).
Only URIs on Key Vault hosts are asked; install with ``pip install dpvault[keyvault]``.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

from dpvault.secrets import SecretUnavailableError

KEY_VAULT_SUFFIXES = (
    ".vault.azure.net",
    ".vault.azure.cn",
    ".vault.usgovcloudapi.net",
    ".vault.microsoftazure.de",
)


class KeyVaultSecrets:
    """Key Vault answers only for ``tenants``: dpvault reads with one credential of its own, which
    cannot tell one tenant's vaults from another's, so by default only the server's own tenant may
    use it (another tenant naming the same URI gets UserErrorSecretNotFound, as for the local store)."""

    def __init__(self, *, tenants: set[str]) -> None:
        self._tenants = {t.lower() for t in tenants}
        try:
            from azure.identity import DefaultAzureCredential
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise RuntimeError("--key-vault needs azure-identity and azure-keyvault-secrets") from exc
        self._credential = DefaultAzureCredential()
        self._clients: dict[str, Any] = {}

    def _client(self, vault_url: str) -> Any:
        from azure.keyvault.secrets import SecretClient

        if vault_url not in self._clients:
            self._clients[vault_url] = SecretClient(vault_url=vault_url, credential=self._credential)
        return self._clients[vault_url]

    async def get(self, uri: str, tenant: str) -> str | None:
        if tenant.lower() not in self._tenants:
            return None
        parts = urlsplit(uri.strip())
        host = (parts.hostname or "").lower()
        segments = parts.path.strip("/").split("/")
        if parts.scheme != "https" or not host.endswith(KEY_VAULT_SUFFIXES) or len(segments) < 2:
            return None
        if segments[0].lower() != "secrets":
            return None
        name = segments[1]
        version = segments[2] if len(segments) > 2 else None
        client = self._client(f"https://{parts.netloc}")
        try:
            from azure.core.exceptions import ResourceNotFoundError

            secret = await asyncio.to_thread(client.get_secret, name, version)
        except ResourceNotFoundError:
            return None
        except Exception as exc:
            raise SecretUnavailableError(
                f"Key Vault {host} could not be read: {type(exc).__name__}"
            ) from None
        return secret.value

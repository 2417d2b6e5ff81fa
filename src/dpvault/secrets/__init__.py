"""Secret providers: where ``datasourceAuthCredentials.secretStoreResource.uri`` resolves.

Azure Backup keeps no copy of database credentials; it reads a Key Vault secret for every backup.
dpvault does the same through providers tried in order:

1. the local secret store (``dpvault secrets set <uri>``): values encrypted at rest in the state
   database with a key that lives outside it (``<data-dir>/identity/secrets.key`` or
   ``DPVAULT_SECRETS_KEY``);
2. Azure Key Vault (``serve --key-vault``), through azure-keyvault-secrets and DefaultAzureCredential.

Secret values are never logged, stored in plain text, or returned by the API.
"""

from __future__ import annotations

from typing import Protocol


class SecretNotFoundError(LookupError):
    """No provider holds the secret."""


class SecretUnavailableError(RuntimeError):
    """A provider that might hold the secret could not be asked (network, permissions)."""


class SecretProvider(Protocol):
    async def get(self, uri: str, tenant: str) -> str | None:
        """The secret's current value for ``tenant`` (the tenant that owns the asking backup
        instance's subscription), or None if this provider does not hold it. Never logs it."""
        ...


class SecretResolver:
    """Asks each provider in turn."""

    def __init__(self, providers: list[SecretProvider]) -> None:
        self.providers = providers

    async def get(self, uri: str, tenant: str) -> str:
        for provider in self.providers:
            value = await provider.get(uri, tenant)
            if value is not None:
                return value
        raise SecretNotFoundError(uri)

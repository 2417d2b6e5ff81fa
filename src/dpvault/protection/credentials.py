"""Credentials: the secret a backup instance (or a restore target) names, resolved for the tenant
that owns the instance's subscription and parsed by the datasource's engine.

Azure Backup keeps no copy of database credentials; it reads the Key Vault secret for every backup.
dpvault does the same through its secret providers (``dpvault.secrets``), tenant-scoped: an
instance only ever reads secrets of its own tenant, whatever URI it names.
"""

from __future__ import annotations

from dpvault.engines.base import Engine, Params
from dpvault.errors import UserError
from dpvault.model.instances.schema import SecretStoreBasedAuthCredentials
from dpvault.secrets import SecretNotFoundError, SecretResolver, SecretUnavailableError
from dpvault.services import Services


def secret_not_found(uri: str) -> UserError:
    return UserError(
        "UserErrorSecretNotFound",
        f"The secret '{uri}' was not found in any configured secret store.",
        "Store the database connection string under this URI (dpvault secrets set <uri>) or fix the URI "
        "in datasourceAuthCredentials.secretStoreResource.uri.",
    )


def no_credentials() -> UserError:
    return UserError(
        "UserErrorMissingCredentials",
        "The backup instance has no datasourceAuthCredentials, so dpvault cannot connect to the database.",
        "Add datasourceAuthCredentials with a SecretStoreBasedAuthCredentials secretStoreResource.uri.",
    )


class Credentials:
    def __init__(self, svc: Services, secrets: SecretResolver) -> None:
        self.svc = svc
        self.secrets = secrets

    async def params(
        self, creds: SecretStoreBasedAuthCredentials | None, subscription: str, engine: Engine
    ) -> Params:
        """The connection parameters ``creds`` name, read for ``subscription``'s tenant."""
        return engine.parse_secret(await self.secret(creds, subscription))

    async def tenant_of(self, subscription: str) -> str:
        """The tenant that owns ``subscription`` (the server's own for one nobody claimed)."""
        async with self.svc.store.read() as tx:
            owner = await tx.subscription(subscription.lower())
        return str(owner["tenant"]) if owner else self.svc.settings.tenant_id

    async def secret(self, creds: SecretStoreBasedAuthCredentials | None, subscription: str) -> str:
        uri = creds.secretStoreResource.uri if creds and creds.secretStoreResource else None
        if not uri:
            raise no_credentials()
        tenant = await self.tenant_of(subscription)
        try:
            return await self.secrets.get(uri, tenant)
        except SecretNotFoundError:
            raise secret_not_found(uri) from None
        except SecretUnavailableError as exc:
            raise UserError(
                "UserErrorSecretStoreUnavailable",
                str(exc),
                "Check that dpvault may read the secret store.",
                retryable=True,
            ) from None

"""Key Vault is read with dpvault's one credential, so it answers only for the tenants it is
configured for (the server's own): another tenant naming the same URI finds nothing there."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("azure.keyvault.secrets")

from dpvault.secrets.keyvault import KeyVaultSecrets


def test_another_tenant_is_not_answered() -> None:
    provider = KeyVaultSecrets(tenants={"00000000-0000-0000-0000-000000000001"})
    uri = "https://someone.vault.azure.net/secrets/pg"
    assert asyncio.run(provider.get(uri, "11111111-1111-1111-1111-111111111111")) is None
    assert provider._clients == {}  # it did not even build a client for that vault

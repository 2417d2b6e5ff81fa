"""Soft-deleted backup vaults (2025-09-01+): ``GET /subscriptions/{s}/providers/Microsoft.DataProtection/
locations/{l}/deletedVaults[/{name}]``; undelete is the vault PUT with ``x-ms-deleted-vault-id``."""

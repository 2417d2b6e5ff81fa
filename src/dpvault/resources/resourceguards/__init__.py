"""Resource guards (Microsoft.DataProtection/resourceGuards): what a security admin owns to approve
the critical operations of the vaults linked to it."""

"""Recovery points (AzureBackupDiscreteRecoveryPoint) of a backup instance: list and get."""

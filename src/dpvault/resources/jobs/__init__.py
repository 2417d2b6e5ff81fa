"""Backup jobs (AzureBackupJob): every validation, backup and retention run, as the API reports it."""

"""Backup instances: the PUT at the heart of dpvault, and its lifecycle (provision, update, delete)."""

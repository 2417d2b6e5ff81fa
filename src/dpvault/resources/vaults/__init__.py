"""Backup vaults: the tracked resource that holds policies, instances and (later) recovery points."""

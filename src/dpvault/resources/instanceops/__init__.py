"""Backup-instance operations beyond the lifecycle (issue 13 item 4): findRestorableTimeRanges,
validateForModifyBackup, rehydrate, and listing the instances that protect a resource."""

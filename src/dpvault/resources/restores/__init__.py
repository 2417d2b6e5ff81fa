"""Restore: ``validateRestore`` and ``restore`` of a recovery point into a database or as files."""

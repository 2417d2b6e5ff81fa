"""Backup policies: schedules (ISO 8601 repeating intervals), tagging criteria and retention lifecycles."""

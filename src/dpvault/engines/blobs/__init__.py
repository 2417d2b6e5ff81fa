"""The blob container engine: vaulted backups of a storage account's containers (``engine.py``)."""

"""Soft-deleted backup instances: ``…/backupVaults/{v}/deletedBackupInstances[/{name}]`` and undelete.
How a delete becomes a soft delete is ``soft_delete.py``; the purge is the core's
(``protection/softdelete.py``)."""

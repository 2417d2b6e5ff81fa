"""The model: what dpvault's resources and work *are*, below both the ARM handlers and the core.

- ``schema`` and one package per resource type (``instances``, ``policies``, ``vaults``,
  ``restores``): msgspec Structs that mirror the 2023-01-01 spec, and the pure rules about them
  (validation, the stored body, schedules, tagging) -- no I/O;
- ``keys``: the lower-cased ids rows are stored under;
- the records of work, written in the same transaction as the request or tick that asks for it:
  ``operations`` (long-running operations), ``backup_jobs`` (Azure's backupJobs) and ``payloads``
  (what each kind of queued job carries).

``resources`` (ARM handlers) and ``protection`` (the core) both build on this package; it imports
neither.
"""

"""The protection core: backups, restores, drills, schedules and retention, on two ports -- the
engines (``dpvault.engines``: what a datasource is dumped and restored with) and the vault
(``dpvault.vault`` over a ``dpvault.datastores`` store: where recovery points live).

A backup (``backup.py``):

1. resolve the instance's credential secret for its tenant (``credentials.py``);
2. record the point's intent, then stream the engine's dump into the datastore, hashing while
   streaming;
3. read it back: re-hash it and let the engine check the archive;
4. write the manifest, then make the point ``available``, tag it and set its expiry in the one
   transaction that completes the job.

``planning.py`` decides when (ISO 8601 repeating intervals), ``scheduler.py`` enqueues one job per
occurrence, ``retention.py`` deletes what expired, ``restore.py`` and ``restore_files.py`` restore,
``drills.py`` proves a point restores, ``timekeeper.py`` drives the manual clock. ``service.py`` is
what the ARM handlers see. This package never imports ``dpvault.resources``.
"""

"""Engines: what backs a datasource up and restores it, one package per kind of datasource.

An engine serves the datasource types it names (``Engine.datasource_types``); the registry
(``registry.py``) maps a backup instance's type to its engine, and a type no engine serves is
accepted and shallowly validated but never backed up. A backup, for every engine:

1. dump: the engine streams the datasource's bytes (PostgreSQL: ``pg_dump -Fc``), never staging
   them on local disk, into the vault datastore, which hashes (SHA-256) while streaming;
2. check: the stored object is read back and handed to the engine's archive check (PostgreSQL:
   ``pg_restore --list``) while its SHA-256 is recomputed;
3. the vault records the recovery point (manifest, then row) -- ``dpvault.vault``.

Restore hands the engine a local, seekable copy of the archive (``Datastore.local_copy``) and a
target; a drill restores into a scratch target and returns the engine's fingerprint of it, which
is compared with the fingerprint taken in the dump's own snapshot.
"""

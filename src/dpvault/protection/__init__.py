"""Protection engines: what actually backs data up and restores it.

A backup, for PostgreSQL (``postgres.py``):

1. resolve the credentials secret (``dpvault.secrets``) into libpq parameters (``connstr.py``);
2. run ``pg_dump -Fc`` with the password in the environment, never on the command line;
3. stream its output into the vault datastore's staging area, hashing (SHA-256) while streaming;
4. check the archive (``pg_restore --list``) and its hash, then publish it atomically;
5. record the recovery point (tag, expiry) and the job in one transaction.

``scheduler.py`` decides when (ISO 8601 repeating intervals, one job per occurrence),
``tagging.py`` which retention tag a recovery point gets, ``retention.py`` when it expires.
"""

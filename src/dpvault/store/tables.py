"""The schema. Migrations in ``migrations/versions`` must reproduce it (a test checks)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

# One row per ARM resource (resource groups, vaults, policies, instances). ``key`` is the lower-cased
# id: names compare case-insensitively while ``name`` and ``body`` keep the casing last sent.
resources = Table(
    "resources",
    metadata,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column("key", Text, nullable=False, unique=True),
    Column("kind", String(32), nullable=False),
    Column("subscription", String(64), nullable=False),
    Column("rg_key", Text, nullable=False),
    Column("parent_key", Text, nullable=False),
    Column("name", String(512), nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("state", String(32), nullable=False),
    Column("active_operation", String(128), nullable=True),
    Column("revision", Integer, nullable=False, default=1),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)
Index("ix_resources_parent", resources.c.parent_key, resources.c.kind, resources.c.pk)
Index("ix_resources_rg", resources.c.rg_key, resources.c.kind, resources.c.pk)
Index("ix_resources_subscription", resources.c.subscription, resources.c.kind, resources.c.pk)

# Long-running operations: what the status and result URLs answer. Kept after the resource is gone.
operations = Table(
    "operations",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("status", String(32), nullable=False),
    Column("subscription", String(64), nullable=False),
    Column("rg_key", Text, nullable=False),
    Column("vault_key", Text, nullable=False),
    Column("resource_key", Text, nullable=False),
    Column("resource_path", Text, nullable=False),
    Column("location", String(64), nullable=False),
    Column("api_version", String(32), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("start_time", Float, nullable=False),
    Column("end_time", Float, nullable=True),
    Column("error", LargeBinary, nullable=True),
    Column("result", LargeBinary, nullable=True),
)

# The durable job queue. A job is claimed by setting a lease; a dead worker's lease expires and the
# job is claimed again. ``dedupe_key`` makes enqueueing idempotent (e.g. one backup per occurrence).
jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(64), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("state", String(16), nullable=False),
    Column("run_at", Float, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("max_attempts", Integer, nullable=False, default=5),
    Column("lease_owner", String(128), nullable=True),
    Column("lease_expires_at", Float, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("dedupe_key", String(512), nullable=True, unique=True),
    Column("created_at", Float, nullable=False),
    Column("finished_at", Float, nullable=True),
)
Index("ix_jobs_ready", jobs.c.state, jobs.c.run_at)

# -- protection (migration 0002) -------------------------------------------------------------

# Secrets for datasource credentials, encrypted with a key kept outside the database; each belongs
# to one tenant (migration 0005), so an instance never reads another tenant's credentials.
secrets = Table(
    "secrets_by_tenant",
    metadata,
    Column("tenant", String(64), primary_key=True),
    Column("uri_key", Text, primary_key=True),
    Column("uri", Text, nullable=False),
    Column("ciphertext", LargeBinary, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# One row per protected backup instance: where its schedule stands. ``next_due_at`` is when the
# scheduler must look at it again; ``last_occurrence`` the newest schedule occurrence already enqueued.
protected_items = Table(
    "protected_items",
    metadata,
    Column("instance_key", Text, primary_key=True),
    Column("vault_key", Text, nullable=False),
    Column("policy_key", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("next_due_at", Float, nullable=True),
    Column("last_occurrence", Float, nullable=True),
    Column("updated_at", Float, nullable=False),
)
Index("ix_protected_items_due", protected_items.c.next_due_at)
Index("ix_protected_items_policy", protected_items.c.policy_key)

# Recovery points: metadata here, bytes in the vault datastore under ``object_key``.
recovery_points = Table(
    "recovery_points",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("instance_key", Text, nullable=False),
    Column("vault_key", Text, nullable=False),
    Column("time", Float, nullable=False),
    Column("tag", String(128), nullable=False),
    Column("rule_name", String(260), nullable=False),
    Column("policy_name", String(260), nullable=False),
    Column("policy_version", String(32), nullable=False),
    Column("data_store", String(32), nullable=False),
    Column("object_key", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("expiry", Float, nullable=True),
    Column("details", LargeBinary, nullable=False),
    Column("state", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
)
Index("ix_recovery_points_instance", recovery_points.c.instance_key, recovery_points.c.time)
Index("ix_recovery_points_expiry", recovery_points.c.state, recovery_points.c.expiry)

# Backup jobs (the AzureBackupJob resource): validations, backups, retention runs.
backup_jobs = Table(
    "backup_jobs",
    metadata,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column("id", String(36), nullable=False, unique=True),
    Column("vault_key", Text, nullable=False),
    Column("instance_key", Text, nullable=True),
    Column("operation", String(64), nullable=False),
    Column("category", String(32), nullable=False),
    Column("status", String(32), nullable=False),
    Column("user_triggered", Boolean, nullable=False),
    Column("start_time", Float, nullable=False),
    Column("end_time", Float, nullable=True),
    Column("bytes", BigInteger, nullable=True),
    Column("info", LargeBinary, nullable=False),
    Column("error", LargeBinary, nullable=True),
    # migration 0003: the recovery point a restore (or drill) reads; retention skips it while in use
    Column("recovery_point_id", String(36), nullable=True),
)
Index("ix_backup_jobs_vault", backup_jobs.c.vault_key, backup_jobs.c.pk)
Index("ix_backup_jobs_recovery_point", backup_jobs.c.recovery_point_id, backup_jobs.c.status)

# The manual clock (``serve --clock manual``), shared by every process on the database.
clock_state = Table(
    "clock_state",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("now", Float, nullable=False),
)

# -- identity (migration 0004) ---------------------------------------------------------------

# OAuth clients of the built-in issuer (dpvault clients add). Only a hash of the secret is kept.
clients = Table(
    "clients",
    metadata,
    Column("client_id", String(36), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("tenant", String(64), nullable=False),
    Column("secret_hash", String(128), nullable=False),
    Column("created_at", Float, nullable=False),
)

# Subscriptions and the tenant that owns each (claimed on first use, or dpvault subscriptions add).
subscriptions = Table(
    "subscriptions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("display_name", String(256), nullable=False),
    Column("created_at", Float, nullable=False),
)
Index("ix_subscriptions_tenant", subscriptions.c.tenant)

# -- vault format 2 (migration 0007) ---------------------------------------------------------

# Each backup vault's data key, wrapped by a key-encryption key (docs/design/vault-format.md); a
# copy lives in the vault datastore too, so the vault can be read with its KEK alone.
vault_keys = Table(
    "vault_keys",
    metadata,
    Column("vault_key", Text, primary_key=True),
    Column("key_id", String(36), nullable=False),
    Column("wrapped", LargeBinary, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# Pack objects of a vault: written whole, then recorded here with their chunks (the index).
vault_packs = Table(
    "vault_packs",
    metadata,
    Column("vault_key", Text, primary_key=True),
    Column("pack_id", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("chunks", Integer, nullable=False),
    Column("retain_until", Float, nullable=True),
    Column("created_at", Float, nullable=False),
)

# The chunk index: where each chunk of a vault is stored (one copy is indexed; a duplicate written
# by a concurrent backup stays unindexed in its pack until the pack is repacked).
vault_chunks = Table(
    "vault_chunks",
    metadata,
    Column("vault_key", Text, primary_key=True),
    Column("chunk_id", String(64), primary_key=True),
    Column("pack_id", String(64), nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("length", Integer, nullable=False),
    Column("raw_length", Integer, nullable=False),
)
Index("ix_vault_chunks_pack", vault_chunks.c.vault_key, vault_chunks.c.pack_id)

# The maintenance lease of a vault: garbage collection holds it (exclusively) while no backup of the
# vault is writing; a backup does not start writing while it is held.
vault_maintenance = Table(
    "vault_maintenance",
    metadata,
    Column("vault_key", Text, primary_key=True),
    Column("owner", String(128), nullable=True),
    Column("until", Float, nullable=False),
    # When points of the vault were last deleted (its garbage has not been collected since); or None.
    Column("dirty_since", Float, nullable=True),
)

# -- soft delete (migration 0008) -------------------------------------------------------------

# What was soft-deleted and when it is purged for good: backup instances (``kind`` backupInstances;
# ``key`` the deleted instance's resource key, ``original_key`` the live key it came from) and vaults
# (``kind`` backupVaults; ``key`` the deleted vault's key under its location). ``original`` holds
# what undelete brings back (the live body; for a vault also its policies).
soft_deletions = Table(
    "soft_deletions",
    metadata,
    Column("key", Text, primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("original_key", Text, nullable=False),
    Column("vault_key", Text, nullable=False),
    Column("subscription", String(64), nullable=False),
    Column("deleted_at", Float, nullable=False),
    Column("purge_at", Float, nullable=False),
    Column("activity_id", String(36), nullable=False),
    Column("original", LargeBinary, nullable=False),
)
Index("ix_soft_deletions_purge", soft_deletions.c.purge_at)
Index("ix_soft_deletions_original", soft_deletions.c.original_key)

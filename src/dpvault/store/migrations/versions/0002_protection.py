"""pre: secrets, protected items, recovery points, backup jobs, manual clock

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "secrets",
        sa.Column("uri_key", sa.Text, primary_key=True),
        sa.Column("uri", sa.Text, nullable=False),
        sa.Column("ciphertext", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "protected_items",
        sa.Column("instance_key", sa.Text, primary_key=True),
        sa.Column("vault_key", sa.Text, nullable=False),
        sa.Column("policy_key", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("next_due_at", sa.Float, nullable=True),
        sa.Column("last_occurrence", sa.Float, nullable=True),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_protected_items_due", "protected_items", ["next_due_at"])
    op.create_index("ix_protected_items_policy", "protected_items", ["policy_key"])
    op.create_table(
        "recovery_points",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("instance_key", sa.Text, nullable=False),
        sa.Column("vault_key", sa.Text, nullable=False),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("tag", sa.String(128), nullable=False),
        sa.Column("rule_name", sa.String(260), nullable=False),
        sa.Column("policy_name", sa.String(260), nullable=False),
        sa.Column("policy_version", sa.String(32), nullable=False),
        sa.Column("data_store", sa.String(32), nullable=False),
        sa.Column("object_key", sa.Text, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("expiry", sa.Float, nullable=True),
        sa.Column("details", sa.LargeBinary, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_recovery_points_instance", "recovery_points", ["instance_key", "time"])
    op.create_index("ix_recovery_points_expiry", "recovery_points", ["state", "expiry"])
    op.create_table(
        "backup_jobs",
        sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(36), nullable=False, unique=True),
        sa.Column("vault_key", sa.Text, nullable=False),
        sa.Column("instance_key", sa.Text, nullable=True),
        sa.Column("operation", sa.String(64), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("user_triggered", sa.Boolean, nullable=False),
        sa.Column("start_time", sa.Float, nullable=False),
        sa.Column("end_time", sa.Float, nullable=True),
        sa.Column("bytes", sa.BigInteger, nullable=True),
        sa.Column("info", sa.LargeBinary, nullable=False),
        sa.Column("error", sa.LargeBinary, nullable=True),
    )
    op.create_index("ix_backup_jobs_vault", "backup_jobs", ["vault_key", "pk"])
    op.create_table(
        "clock_state",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("now", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for table in ("clock_state", "backup_jobs", "recovery_points", "protected_items", "secrets"):
        op.drop_table(table)

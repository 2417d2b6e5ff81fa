"""pre: backup jobs remember the recovery point they use (retention never deletes one being restored)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("backup_jobs") as batch:
        batch.add_column(sa.Column("recovery_point_id", sa.String(36), nullable=True))
    op.create_index("ix_backup_jobs_recovery_point", "backup_jobs", ["recovery_point_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_backup_jobs_recovery_point", "backup_jobs")
    with op.batch_alter_table("backup_jobs") as batch:
        batch.drop_column("recovery_point_id")

"""soft deletions: when each soft-deleted backup instance and vault is purged for good (issue 13)

Revision ID: 0008
Revises: 0007
Create Date: 2027-01-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "soft_deletions",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("original_key", sa.Text, nullable=False),
        sa.Column("vault_key", sa.Text, nullable=False),
        sa.Column("subscription", sa.String(64), nullable=False),
        sa.Column("deleted_at", sa.Float, nullable=False),
        sa.Column("purge_at", sa.Float, nullable=False),
        sa.Column("activity_id", sa.String(36), nullable=False),
        sa.Column("original", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_soft_deletions_purge", "soft_deletions", ["purge_at"])
    op.create_index("ix_soft_deletions_original", "soft_deletions", ["original_key"])


def downgrade() -> None:
    op.drop_index("ix_soft_deletions_original", table_name="soft_deletions")
    op.drop_index("ix_soft_deletions_purge", table_name="soft_deletions")
    op.drop_table("soft_deletions")

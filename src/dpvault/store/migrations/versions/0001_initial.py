"""pre: resources, operations and the job queue

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "resources",
        sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.Text, nullable=False, unique=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("subscription", sa.String(64), nullable=False),
        sa.Column("rg_key", sa.Text, nullable=False),
        sa.Column("parent_key", sa.Text, nullable=False),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("active_operation", sa.String(128), nullable=True),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_resources_parent", "resources", ["parent_key", "kind", "pk"])
    op.create_index("ix_resources_rg", "resources", ["rg_key", "kind", "pk"])
    op.create_index("ix_resources_subscription", "resources", ["subscription", "kind", "pk"])
    op.create_table(
        "operations",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("subscription", sa.String(64), nullable=False),
        sa.Column("rg_key", sa.Text, nullable=False),
        sa.Column("vault_key", sa.Text, nullable=False),
        sa.Column("resource_key", sa.Text, nullable=False),
        sa.Column("resource_path", sa.Text, nullable=False),
        sa.Column("location", sa.String(64), nullable=False),
        sa.Column("api_version", sa.String(32), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("start_time", sa.Float, nullable=False),
        sa.Column("end_time", sa.Float, nullable=True),
        sa.Column("error", sa.LargeBinary, nullable=True),
        sa.Column("result", sa.LargeBinary, nullable=True),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("run_at", sa.Float, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("lease_owner", sa.String(128), nullable=True),
        sa.Column("lease_expires_at", sa.Float, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("dedupe_key", sa.String(512), nullable=True, unique=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float, nullable=True),
    )
    op.create_index("ix_jobs_ready", "jobs", ["state", "run_at"])


def downgrade() -> None:
    op.drop_table("jobs")
    op.drop_table("operations")
    op.drop_table("resources")

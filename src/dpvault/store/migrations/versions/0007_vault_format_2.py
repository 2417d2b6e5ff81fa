"""vault format 2: data keys, packs, the chunk index and the maintenance lease of each vault

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vault_keys",
        sa.Column("vault_key", sa.Text, primary_key=True),
        sa.Column("key_id", sa.String(36), nullable=False),
        sa.Column("wrapped", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "vault_packs",
        sa.Column("vault_key", sa.Text, primary_key=True),
        sa.Column("pack_id", sa.String(64), primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("chunks", sa.Integer, nullable=False),
        sa.Column("retain_until", sa.Float, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "vault_chunks",
        sa.Column("vault_key", sa.Text, primary_key=True),
        sa.Column("chunk_id", sa.String(64), primary_key=True),
        sa.Column("pack_id", sa.String(64), nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("length", sa.Integer, nullable=False),
        sa.Column("raw_length", sa.Integer, nullable=False),
    )
    op.create_index("ix_vault_chunks_pack", "vault_chunks", ["vault_key", "pack_id"])
    op.create_table(
        "vault_maintenance",
        sa.Column("vault_key", sa.Text, primary_key=True),
        sa.Column("owner", sa.String(128), nullable=True),
        sa.Column("until", sa.Float, nullable=False),
        sa.Column("dirty_since", sa.Float, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("vault_maintenance")
    op.drop_index("ix_vault_chunks_pack", "vault_chunks")
    op.drop_table("vault_chunks")
    op.drop_table("vault_packs")
    op.drop_table("vault_keys")

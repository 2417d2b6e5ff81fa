"""secrets belong to a tenant: a backup instance only ever reads its own tenant's secrets

Existing secrets go to the server's own tenant (the one ``dpvault token`` signs for).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Settings.tenant_id when this migration was written: frozen here, as a migration must be.
SERVER_TENANT = "00000000-0000-0000-0000-000000000001"


def upgrade() -> None:
    op.create_table(
        "secrets_by_tenant",
        sa.Column("tenant", sa.String(64), primary_key=True),
        sa.Column("uri_key", sa.Text, primary_key=True),
        sa.Column("uri", sa.Text, nullable=False),
        sa.Column("ciphertext", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.execute(
        sa.text(
            "INSERT INTO secrets_by_tenant (tenant, uri_key, uri, ciphertext, created_at, updated_at) "
            "SELECT :tenant, uri_key, uri, ciphertext, created_at, updated_at FROM secrets"
        ).bindparams(tenant=SERVER_TENANT)
    )
    op.drop_table("secrets")


def downgrade() -> None:
    op.create_table(
        "secrets",
        sa.Column("uri_key", sa.Text, primary_key=True),
        sa.Column("uri", sa.Text, nullable=False),
        sa.Column("ciphertext", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.execute(
        sa.text(
            "INSERT INTO secrets (uri_key, uri, ciphertext, created_at, updated_at) "
            "SELECT uri_key, uri, ciphertext, created_at, updated_at FROM secrets_by_tenant WHERE tenant = :tenant"
        ).bindparams(tenant=SERVER_TENANT)
    )
    op.drop_table("secrets_by_tenant")

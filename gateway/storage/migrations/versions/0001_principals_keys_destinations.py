"""Principals, gateway keys, admin tokens, destinations, uploaded files.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "principals",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("groups", sa.JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "gateway_keys",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("principal_id", sa.String(128), sa.ForeignKey("principals.id", ondelete="CASCADE"), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(24), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_gateway_keys_principal_id", "gateway_keys", ["principal_id"])
    op.create_table(
        "admin_tokens",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "destinations",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("base_url", sa.String(2048), nullable=False),
        sa.Column("api_format", sa.String(16), nullable=False),
        sa.Column("models", sa.JSON, nullable=False),
        sa.Column("third_party", sa.Boolean, nullable=False),
        sa.Column("trains_on_inputs", sa.Boolean, nullable=False),
        sa.Column("api_key_env", sa.String(256), nullable=True),
        sa.Column("timeout_seconds", sa.Float, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "uploaded_files",
        sa.Column("id", sa.String(256), primary_key=True),
        sa.Column("destination_id", sa.String(64), nullable=False),
        sa.Column("principal_id", sa.String(128), nullable=False),
        sa.Column("purpose", sa.String(64), nullable=False),
        sa.Column("decision_id", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )


def downgrade() -> None:
    for table in ("uploaded_files", "destinations", "admin_tokens", "gateway_keys", "principals"):
        op.drop_table(table)

"""Destruction certificates (Article 8): one per agreement whose material was destroyed.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "destruction_certificates",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("agreement_id", sa.String(128), nullable=False, unique=True),
        sa.Column("destroyed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requested_by", sa.String(256), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("audit_record_id", sa.String(64), nullable=False),
        sa.Column("audit_chain_head", sa.String(64), nullable=False),
        sa.Column("certificate", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("destruction_certificates")

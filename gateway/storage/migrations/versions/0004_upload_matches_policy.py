"""Matches of uploaded files (inherited by fine-tuning jobs); the policy document set through the API.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("uploaded_files") as batch:
        batch.add_column(sa.Column("matches", sa.JSON, nullable=True))
    op.create_table(
        "policy_documents",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("document", sa.JSON, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("policy_documents")
    with op.batch_alter_table("uploaded_files") as batch:
        batch.drop_column("matches")

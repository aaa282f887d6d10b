"""Agreements, items, exclusions, record sets, consents, consent requests, registry events.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "agreements",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("title", sa.String(512), nullable=False),
        sa.Column("counterparty", sa.String(512), nullable=False),
        sa.Column("purpose", sa.Text, nullable=False),
        sa.Column("effective_date", sa.Date, nullable=False),
        sa.Column("term_years", sa.Integer, nullable=False),
        sa.Column("survival_years", sa.Integer, nullable=False),
        sa.Column("terminated_at", TS, nullable=True),
        sa.Column("authorized_principals", sa.JSON, nullable=False),
        sa.Column("authorized_groups", sa.JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("destroyed_at", TS, nullable=True),
    )
    op.create_table(
        "items",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("agreement_id", sa.String(128), sa.ForeignKey("agreements.id"), nullable=False),
        sa.Column("title", sa.String(512), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("filename", sa.String(512), nullable=True),
        sa.Column("provisional", sa.Boolean, nullable=False),
        sa.Column("disclosed_at", TS, nullable=True),
        sa.Column("written_notice_at", TS, nullable=True),
        sa.Column("derived_from", sa.String(64), nullable=True),
        sa.Column("chars", sa.Integer, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("fingerprint_count", sa.Integer, nullable=False),
        sa.Column("fingerprints", sa.LargeBinary, nullable=False),
        sa.Column("terms", sa.LargeBinary, nullable=True),
        sa.Column("term_count", sa.Integer, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_items_agreement_id", "items", ["agreement_id"])
    op.create_table(
        "exclusions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("agreement_id", sa.String(128), sa.ForeignKey("agreements.id"), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("chars", sa.Integer, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("fingerprint_count", sa.Integer, nullable=False),
        sa.Column("text_sealed", sa.LargeBinary, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_exclusions_agreement_id", "exclusions", ["agreement_id"])
    op.create_table(
        "record_sets",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("agreement_id", sa.String(128), sa.ForeignKey("agreements.id"), nullable=False),
        sa.Column("filename", sa.String(512), nullable=True),
        sa.Column("columns", sa.JSON, nullable=False),
        sa.Column("min_cells", sa.Integer, nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("cells", sa.LargeBinary, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_record_sets_agreement_id", "record_sets", ["agreement_id"])
    op.create_table(
        "consents",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("agreement_id", sa.String(128), nullable=False),
        sa.Column("item_ids", sa.JSON, nullable=False),
        sa.Column("destinations", sa.JSON, nullable=False),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("valid_from", TS, nullable=True),
        sa.Column("valid_until", TS, nullable=True),
        sa.Column("evidence_reference", sa.String(1024), nullable=False),
        sa.Column("evidence_sha256", sa.String(64), nullable=True),
        sa.Column("granted_by", sa.String(256), nullable=False),
        sa.Column("consent_request_id", sa.String(64), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
    )
    op.create_index("ix_consents_agreement_id", "consents", ["agreement_id"])
    op.create_table(
        "consent_requests",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("agreement_id", sa.String(128), nullable=False),
        sa.Column("item_ids", sa.JSON, nullable=False),
        sa.Column("destination_id", sa.String(64), nullable=False),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("principal_id", sa.String(128), nullable=False),
        sa.Column("decision_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("resolved_at", TS, nullable=True),
        sa.Column("resolved_by", sa.String(256), nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("consent_id", sa.String(64), nullable=True),
    )
    op.create_index("ix_consent_requests_agreement_id", "consent_requests", ["agreement_id"])
    op.create_index("ix_consent_requests_status", "consent_requests", ["status"])
    op.create_table(
        "registry_events",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("object_id", sa.String(64), nullable=False),
        sa.Column("agreement_id", sa.String(128), nullable=False),
        sa.Column("at", TS, nullable=False),
    )


def downgrade() -> None:
    for table in ("registry_events", "consent_requests", "consents", "record_sets", "exclusions", "items",
                  "agreements"):
        op.drop_table(table)

"""The store's tables. Migrations in `migrations/versions` create them; keep both in step."""

from __future__ import annotations

from sqlalchemy import (
    JSON, Boolean, Column, Date, DateTime, Float, ForeignKey, Integer, LargeBinary, MetaData, String, Table, Text,
)

metadata = MetaData()

principals = Table(
    "principals",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("groups", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

gateway_keys = Table(
    "gateway_keys",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("principal_id", String(128), ForeignKey("principals.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(24), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

admin_tokens = Table(
    "admin_tokens",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

destinations = Table(
    "destinations",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("base_url", String(2048), nullable=False),
    Column("api_format", String(16), nullable=False),
    Column("models", JSON, nullable=False),
    Column("third_party", Boolean, nullable=False),
    Column("trains_on_inputs", Boolean, nullable=False),
    Column("api_key_env", String(256), nullable=True),
    Column("timeout_seconds", Float, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

uploaded_files = Table(
    "uploaded_files",
    metadata,
    Column("id", String(256), primary_key=True),
    Column("destination_id", String(64), nullable=False),
    Column("principal_id", String(128), nullable=False),
    Column("purpose", String(64), nullable=False),
    Column("decision_id", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("matches", JSON, nullable=True),  # ids and spans of what the file matched, for fine-tuning jobs
)

agreements = Table(
    "agreements",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("title", String(512), nullable=False),
    Column("counterparty", String(512), nullable=False),
    Column("purpose", Text, nullable=False),
    Column("effective_date", Date, nullable=False),
    Column("term_years", Integer, nullable=False),
    Column("survival_years", Integer, nullable=False),
    Column("terminated_at", DateTime(timezone=True), nullable=True),
    Column("authorized_principals", JSON, nullable=False),
    Column("authorized_groups", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("destroyed_at", DateTime(timezone=True), nullable=True),
)

items = Table(
    "items",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("agreement_id", String(128), ForeignKey("agreements.id"), nullable=False, index=True),
    Column("title", String(512), nullable=False),
    Column("category", String(32), nullable=False),
    Column("source", String(16), nullable=False),  # text | file | terms | derived
    Column("filename", String(512), nullable=True),
    Column("provisional", Boolean, nullable=False),
    Column("disclosed_at", DateTime(timezone=True), nullable=True),
    Column("written_notice_at", DateTime(timezone=True), nullable=True),
    Column("derived_from", String(64), nullable=True),
    Column("chars", Integer, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("fingerprint_count", Integer, nullable=False),
    Column("fingerprints", LargeBinary, nullable=False),  # keyed 64-bit hashes, never text
    Column("terms", LargeBinary, nullable=True),  # terms encrypted under the deployment secret
    Column("term_count", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("fingerprint_scheme", Integer, nullable=False, server_default="1"),  # see detection.FINGERPRINT_SCHEME
)

exclusions = Table(
    "exclusions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("agreement_id", String(128), ForeignKey("agreements.id"), nullable=False, index=True),
    Column("reason", String(64), nullable=False),
    Column("chars", Integer, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("fingerprint_count", Integer, nullable=False),
    Column("text_sealed", LargeBinary, nullable=False),  # public text (Article 2(2)), still sealed at rest
    Column("created_at", DateTime(timezone=True), nullable=False),
)

record_sets = Table(
    "record_sets",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("agreement_id", String(128), ForeignKey("agreements.id"), nullable=False, index=True),
    Column("filename", String(512), nullable=True),
    Column("columns", JSON, nullable=False),
    Column("min_cells", Integer, nullable=False),
    Column("rows", Integer, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("cells", LargeBinary, nullable=False),  # the chosen columns' cells, encrypted under the deployment secret
    Column("created_at", DateTime(timezone=True), nullable=False),
)

consents = Table(
    "consents",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("agreement_id", String(128), nullable=False, index=True),
    Column("item_ids", JSON, nullable=False),
    Column("destinations", JSON, nullable=False),
    Column("purpose", String(16), nullable=False),
    Column("valid_from", DateTime(timezone=True), nullable=True),
    Column("valid_until", DateTime(timezone=True), nullable=True),
    Column("evidence_reference", String(1024), nullable=False),
    Column("evidence_sha256", String(64), nullable=True),
    Column("granted_by", String(256), nullable=False),
    Column("consent_request_id", String(64), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)

consent_requests = Table(
    "consent_requests",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("agreement_id", String(128), nullable=False, index=True),
    Column("item_ids", JSON, nullable=False),
    Column("destination_id", String(64), nullable=False),
    Column("purpose", String(16), nullable=False),
    Column("principal_id", String(128), nullable=False),
    Column("decision_id", String(64), nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("resolved_at", DateTime(timezone=True), nullable=True),
    Column("resolved_by", String(256), nullable=True),
    Column("reason", Text, nullable=True),
    Column("consent_id", String(64), nullable=True),
)

# Every change to what the registry must hold, in order: replicas apply what they have not seen.
registry_events = Table(
    "registry_events",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),  # item_added | item_removed | exclusion_added | record_set_added ...
    Column("object_id", String(64), nullable=False),
    Column("agreement_id", String(128), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)

# The policy set through `PUT /admin/v1/policy` (one row); without it the policy file is in force.
policy_documents = Table(
    "policy_documents",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("document", JSON, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("updated_by", String(64), nullable=False),
)

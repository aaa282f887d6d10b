"""The store's tables. Migrations in `migrations/versions` create them; keep both in step."""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, DateTime, Float, ForeignKey, MetaData, String, Table

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
)

"""Persistence: SQLAlchemy tables and one repository module per aggregate."""

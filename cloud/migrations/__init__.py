"""Alembic migrations of the operational database (see docs/operational-db.md)."""

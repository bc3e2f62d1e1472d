"""Open dead letters: a partial index on `dead_letters` where `resolved_at IS NULL`.

The console lists open letters by default (newest first) and the dashboard
counts them; resolved letters only accumulate. An index on (received_at, id)
over the open rows alone serves both and stays as small as the backlog.
PostgreSQL and SQLite both build partial indexes; the model declares the same
index (`cloud.ingestion.models.DeadLetter`).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "dead_letters"
INDEX = "ix_dead_letters_open_received_at_id"
OPEN = "resolved_at IS NULL"


def upgrade() -> None:
    op.create_index(
        op.f(INDEX),
        TABLE,
        ["received_at", "id"],
        unique=False,
        sqlite_where=sa.text(OPEN),
        postgresql_where=sa.text(OPEN),
    )


def downgrade() -> None:
    op.drop_index(op.f(INDEX), table_name=TABLE)

"""Events named by the agent: `device_events.event_id`, unique per gateway.

Two different meter events logged in one second (DLMS event logs have 1 s
resolution; every unlisted code is kind ``meter_event``) collapsed on the old
key (gateway, meter, kind, occurred_at). Agents now send a stable
``event_id``; an event that has one is unique on (gateway_id, event_id), and
the two old partial indexes are narrowed to events without one (older
agents), which keep the old key. Existing rows have no id and stay valid.

Revision ID: 0004
Revises: 0003
Create Date: 2025-06-10
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "device_events"


def _old_key_indexes(extra_condition: str) -> None:
    op.create_index(
        op.f("uq_device_events_meter_event"),
        TABLE,
        ["gateway_id", "meter_serial", "kind", "occurred_at"],
        unique=True,
        sqlite_where=sa.text(f"meter_serial IS NOT NULL{extra_condition}"),
        postgresql_where=sa.text(f"meter_serial IS NOT NULL{extra_condition}"),
    )
    op.create_index(
        op.f("uq_device_events_gateway_event"),
        TABLE,
        ["gateway_id", "kind", "occurred_at"],
        unique=True,
        sqlite_where=sa.text(f"meter_serial IS NULL{extra_condition}"),
        postgresql_where=sa.text(f"meter_serial IS NULL{extra_condition}"),
    )


def _drop_old_key_indexes() -> None:
    op.drop_index(op.f("uq_device_events_gateway_event"), table_name=TABLE)
    op.drop_index(op.f("uq_device_events_meter_event"), table_name=TABLE)


def upgrade() -> None:
    op.add_column(TABLE, sa.Column("event_id", sa.String(128), nullable=True))
    _drop_old_key_indexes()
    _old_key_indexes(" AND event_id IS NULL")
    op.create_index(
        op.f("uq_device_events_event_id"),
        TABLE,
        ["gateway_id", "event_id"],
        unique=True,
        sqlite_where=sa.text("event_id IS NOT NULL"),
        postgresql_where=sa.text("event_id IS NOT NULL"),
    )


def downgrade() -> None:
    # Events that only their ids told apart would collide on the old key:
    # keep the first of each, as the old ingestion would have.
    op.execute(
        f"DELETE FROM {TABLE} WHERE id NOT IN ("
        f"SELECT min(id) FROM {TABLE} GROUP BY gateway_id, meter_serial, kind, occurred_at)"
    )
    op.drop_index(op.f("uq_device_events_event_id"), table_name=TABLE)
    _drop_old_key_indexes()
    _old_key_indexes("")
    op.drop_column(TABLE, "event_id")

"""Events of gateways and meters: `device_events` (last gasps, lost meters, tamper …).

Written by hand after comparing with autogenerate (conventions as in 0001:
every name in `op.f`, plain SQLAlchemy types). Two partial unique indexes
make an event idempotent on (gateway, meter, kind, occurred_at) whether or
not it names a meter (NULLs are distinct in a plain unique index).

Revision ID: 0003
Revises: 0002
Create Date: 2025-02-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)
# SQLite autoincrements only an INTEGER PRIMARY KEY (the rowid alias).
BIG_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TABLE = "device_events"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", BIG_KEY, nullable=False),
        sa.Column("gateway_id", sa.String(64), nullable=False),
        sa.Column("meter_serial", sa.String(64), nullable=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("occurred_at", TZ, nullable=False),
        sa.Column("received_at", TZ, nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.CheckConstraint(
            "severity IN ('info', 'warning', 'critical')",
            name=op.f("ck_device_events_severity_known"),
        ),
        sa.ForeignKeyConstraint(
            ["gateway_id"],
            ["gateways.id"],
            name=op.f("fk_device_events_gateway_id_gateways"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_events")),
    )
    op.create_index(
        op.f("uq_device_events_meter_event"),
        TABLE,
        ["gateway_id", "meter_serial", "kind", "occurred_at"],
        unique=True,
        sqlite_where=sa.text("meter_serial IS NOT NULL"),
        postgresql_where=sa.text("meter_serial IS NOT NULL"),
    )
    op.create_index(
        op.f("uq_device_events_gateway_event"),
        TABLE,
        ["gateway_id", "kind", "occurred_at"],
        unique=True,
        sqlite_where=sa.text("meter_serial IS NULL"),
        postgresql_where=sa.text("meter_serial IS NULL"),
    )
    op.create_index(op.f("ix_device_events_occurred_at"), TABLE, ["occurred_at"])
    op.create_index(
        op.f("ix_device_events_gateway_id_occurred_at"), TABLE, ["gateway_id", "occurred_at"]
    )
    op.create_index(
        op.f("ix_device_events_meter_serial_occurred_at"), TABLE, ["meter_serial", "occurred_at"]
    )


def downgrade() -> None:
    for name in (
        "ix_device_events_meter_serial_occurred_at",
        "ix_device_events_gateway_id_occurred_at",
        "ix_device_events_occurred_at",
        "uq_device_events_gateway_event",
        "uq_device_events_meter_event",
    ):
        op.drop_index(op.f(name), table_name=TABLE)
    op.drop_table(TABLE)

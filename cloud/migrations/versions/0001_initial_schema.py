"""Initial operational schema: gateways, meters, status events, ingestion statistics, dead letters.

Written by hand after comparing with autogenerate; tests/integration/cloud
checks that it yields exactly `Base.metadata` on SQLite and PostgreSQL.
Every name is wrapped in `op.f` (final): Alembic applies the naming
convention of `Base.metadata` to the tables it creates, and would otherwise
turn ``ck_meters_ct_ratio_positive`` into ``ck_meters_ck_meters_…``.
Types are plain SQLAlchemy types (`UtcDateTime` is `DateTime(timezone=True)`
underneath) so this file never changes when the models do.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)
# SQLite autoincrements only an INTEGER PRIMARY KEY (the rowid alias).
BIG_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
COUNTERS = ("readings_accepted", "readings_rejected", "batches", "sequence_gaps", "duplicates")


def upgrade() -> None:
    op.create_table(
        "gateways",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("site", sa.String(200), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("last_seen_at", TZ, nullable=True),
        sa.Column("online", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("agent_version", sa.String(64), nullable=True),
        sa.Column("broker_username", sa.String(128), nullable=False),
        sa.Column("broker_password_hash", sa.String(255), nullable=False),
        sa.Column("last_sequence", sa.BigInteger(), nullable=True),
        sa.Column("decommissioned_at", TZ, nullable=True),
        sa.CheckConstraint("length(id) BETWEEN 1 AND 64", name=op.f("ck_gateways_id_length")),
        sa.CheckConstraint(
            "last_sequence IS NULL OR last_sequence >= 0",
            name=op.f("ck_gateways_last_sequence_ge_0"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gateways")),
        sa.UniqueConstraint("broker_username", name=op.f("uq_gateways_broker_username")),
    )

    op.create_table(
        "meters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("serial", sa.String(64), nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("protocol", sa.String(16), nullable=False),
        sa.Column("gateway_id", sa.String(64), nullable=False),
        sa.Column("installation_point", sa.Text(), nullable=True),
        sa.Column("ct_ratio", sa.Numeric(12, 4), server_default=sa.text("1"), nullable=False),
        sa.Column("vt_ratio", sa.Numeric(12, 4), server_default=sa.text("1"), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=True),
        sa.Column("installed_at", TZ, nullable=False),
        sa.Column("removed_at", TZ, nullable=True),
        sa.CheckConstraint("ct_ratio > 0", name=op.f("ck_meters_ct_ratio_positive")),
        sa.CheckConstraint("vt_ratio > 0", name=op.f("ck_meters_vt_ratio_positive")),
        sa.CheckConstraint(
            "protocol IN ('modbus', 'dlms', 'iec62056-21')", name=op.f("ck_meters_protocol_known")
        ),
        sa.CheckConstraint(
            "unit_id IS NULL OR unit_id BETWEEN 0 AND 255", name=op.f("ck_meters_unit_id_range")
        ),
        sa.CheckConstraint(
            "removed_at IS NULL OR removed_at >= installed_at",
            name=op.f("ck_meters_removed_after_installed"),
        ),
        sa.ForeignKeyConstraint(
            ["gateway_id"],
            ["gateways.id"],
            name=op.f("fk_meters_gateway_id_gateways"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_meters")),
    )
    op.create_index(op.f("ix_meters_gateway_id"), "meters", ["gateway_id"])
    op.create_index(op.f("ix_meters_serial"), "meters", ["serial"])
    # One open installation per serial: the meter is on one gateway at a time.
    op.create_index(
        op.f("uq_meters_serial_installed"),
        "meters",
        ["serial"],
        unique=True,
        sqlite_where=sa.text("removed_at IS NULL"),
        postgresql_where=sa.text("removed_at IS NULL"),
    )

    op.create_table(
        "gateway_status_events",
        sa.Column("id", BIG_KEY, nullable=False),
        sa.Column("gateway_id", sa.String(64), nullable=False),
        sa.Column("at", TZ, nullable=False),
        sa.Column("online", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("agent_version", sa.String(64), nullable=True),
        sa.Column("buffer_depth_readings", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "buffer_depth_readings IS NULL OR buffer_depth_readings >= 0",
            name=op.f("ck_gateway_status_events_buffer_depth_readings_ge_0"),
        ),
        sa.ForeignKeyConstraint(
            ["gateway_id"],
            ["gateways.id"],
            name=op.f("fk_gateway_status_events_gateway_id_gateways"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gateway_status_events")),
    )
    op.create_index(
        op.f("ix_gateway_status_events_gateway_id_at"),
        "gateway_status_events",
        ["gateway_id", "at"],
    )

    op.create_table(
        "ingestion_statistics",
        sa.Column("gateway_id", sa.String(64), nullable=False),
        sa.Column("bucket_start_at", TZ, nullable=False),
        *(
            sa.Column(name, sa.BigInteger(), server_default=sa.text("0"), nullable=False)
            for name in COUNTERS
        ),
        *(
            sa.CheckConstraint(f"{name} >= 0", name=op.f(f"ck_ingestion_statistics_{name}_ge_0"))
            for name in COUNTERS
        ),
        sa.ForeignKeyConstraint(
            ["gateway_id"],
            ["gateways.id"],
            name=op.f("fk_ingestion_statistics_gateway_id_gateways"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "gateway_id", "bucket_start_at", name=op.f("pk_ingestion_statistics")
        ),
    )

    op.create_table(
        "dead_letters",
        sa.Column("id", BIG_KEY, nullable=False),
        sa.Column("received_at", TZ, nullable=False),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("gateway_id", sa.String(64), nullable=True),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("payload_size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("reason_code", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("resolved_at", TZ, nullable=True),
        sa.CheckConstraint(
            "payload_size_bytes >= 0", name=op.f("ck_dead_letters_payload_size_bytes_ge_0")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
    )
    op.create_index(op.f("ix_dead_letters_received_at"), "dead_letters", ["received_at"])
    op.create_index(
        op.f("ix_dead_letters_gateway_id_received_at"),
        "dead_letters",
        ["gateway_id", "received_at"],
    )


def downgrade() -> None:
    op.drop_table("dead_letters")
    op.drop_table("ingestion_statistics")
    op.drop_table("gateway_status_events")
    op.drop_table("meters")
    op.drop_table("gateways")

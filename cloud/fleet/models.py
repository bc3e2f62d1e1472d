"""Tables of the fleet: gateways, the meters installed on them, their status history,
and the events they report (`DeviceEvent`: last gasps, lost meters, tamper …).

A `Meter` row is one *installation*: a physical meter (its serial) on one
gateway from `installed_at` until `removed_at`. Moving a meter closes its row
and opens a new one, so the history stays queryable ("which gateway did this
reading come through last March?"). At most one row per serial is open:
a partial unique index (``removed_at IS NULL``), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from cloud.core.db import Base

__all__ = [
    "GATEWAY_ID_PATTERN",
    "DeviceEvent",
    "EventSeverity",
    "Gateway",
    "GatewayStatusEvent",
    "Meter",
    "MeterProtocol",
]

# The MQTT topic segment `vs/v1/{gateway_id}/`: no `/`, `+`, `#`, no spaces.
GATEWAY_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

# SQLite only aliases the rowid (and so autoincrements) for INTEGER PRIMARY KEY.
BigIntegerKey = BigInteger().with_variant(Integer(), "sqlite")


class MeterProtocol(StrEnum):
    """How the gateway talks to the meter."""

    MODBUS = "modbus"
    DLMS = "dlms"
    IEC62056_21 = "iec62056-21"


_PROTOCOLS_SQL = ", ".join(f"'{protocol.value}'" for protocol in MeterProtocol)


class Gateway(Base):
    """A field or substation gateway running `voltstack-agent`."""

    __tablename__ = "gateways"
    __table_args__ = (
        CheckConstraint("length(id) BETWEEN 1 AND 64", name="id_length"),
        CheckConstraint("last_sequence IS NULL OR last_sequence >= 0", name="last_sequence_ge_0"),
    )

    # The MQTT gateway id, also the topic segment (GATEWAY_ID_PATTERN).
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    site: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]
    # Last status or uplink seen from the gateway, by its own clock or ours.
    last_seen_at: Mapped[datetime | None]
    online: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    agent_version: Mapped[str | None] = mapped_column(String(64))
    # Its own broker account; the broker ACL confines it to vs/v1/{id}/.
    broker_username: Mapped[str] = mapped_column(String(128), unique=True)
    # Mosquitto `$7$` PBKDF2-SHA512 hash (see cloud.fleet.service); never the password.
    broker_password_hash: Mapped[str] = mapped_column(String(255))
    # Sequence number of the last uplink batch accepted, for gap detection.
    last_sequence: Mapped[int | None] = mapped_column(BigInteger)
    decommissioned_at: Mapped[datetime | None]

    meters: Mapped[list[Meter]] = relationship(back_populates="gateway", lazy="raise")

    def __repr__(self) -> str:
        return f"Gateway(id={self.id!r}, online={self.online!r})"


class Meter(Base):
    """One installation of a meter (by serial) on a gateway."""

    __tablename__ = "meters"
    __table_args__ = (
        CheckConstraint("ct_ratio > 0", name="ct_ratio_positive"),
        CheckConstraint("vt_ratio > 0", name="vt_ratio_positive"),
        CheckConstraint(f"protocol IN ({_PROTOCOLS_SQL})", name="protocol_known"),
        CheckConstraint("unit_id IS NULL OR unit_id BETWEEN 0 AND 255", name="unit_id_range"),
        CheckConstraint(
            "removed_at IS NULL OR removed_at >= installed_at", name="removed_after_installed"
        ),
        # A serial is installed on at most one gateway at a time.
        Index(
            "uq_meters_serial_installed",
            "serial",
            unique=True,
            sqlite_where=text("removed_at IS NULL"),
            postgresql_where=text("removed_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The manufacturer serial, as readings carry it; indexed for history look-ups.
    serial: Mapped[str] = mapped_column(String(64), index=True)
    # Device profile id (edge_agent/profiles), e.g. "eastron-sdm630".
    model: Mapped[str] = mapped_column(String(64))
    protocol: Mapped[str] = mapped_column(String(16))
    gateway_id: Mapped[str] = mapped_column(
        ForeignKey("gateways.id", ondelete="RESTRICT"), index=True
    )
    # Street address or grid reference (feeder, transformer, panel).
    installation_point: Mapped[str | None] = mapped_column(Text)
    # Instrument transformer ratios: primary value = secondary reading × ratio.
    ct_ratio: Mapped[Decimal] = mapped_column(
        Numeric(12, 4), default=Decimal(1), server_default=text("1")
    )
    vt_ratio: Mapped[Decimal] = mapped_column(
        Numeric(12, 4), default=Decimal(1), server_default=text("1")
    )
    # Modbus unit (slave) address; None for DLMS and optical meters.
    unit_id: Mapped[int | None] = mapped_column(Integer)
    installed_at: Mapped[datetime]
    removed_at: Mapped[datetime | None]

    gateway: Mapped[Gateway] = relationship(back_populates="meters", lazy="raise")

    @property
    def installed(self) -> bool:
        return self.removed_at is None

    def __repr__(self) -> str:
        return f"Meter(serial={self.serial!r}, gateway_id={self.gateway_id!r})"


class GatewayStatusEvent(Base):
    """An online/offline transition of a gateway (only transitions are kept)."""

    __tablename__ = "gateway_status_events"
    __table_args__ = (
        Index("ix_gateway_status_events_gateway_id_at", "gateway_id", "at"),
        CheckConstraint(
            "buffer_depth_readings IS NULL OR buffer_depth_readings >= 0",
            name="buffer_depth_readings_ge_0",
        ),
    )

    id: Mapped[int] = mapped_column(BigIntegerKey, primary_key=True)
    gateway_id: Mapped[str] = mapped_column(ForeignKey("gateways.id", ondelete="CASCADE"))
    at: Mapped[datetime]
    online: Mapped[bool] = mapped_column(Boolean)
    # "birth", "last will", "keepalive timeout", "status", …
    reason: Mapped[str] = mapped_column(String(64))
    agent_version: Mapped[str | None] = mapped_column(String(64))
    # Readings waiting in the gateway's store-and-forward buffer, as it reported.
    buffer_depth_readings: Mapped[int | None] = mapped_column(BigInteger)

    def __repr__(self) -> str:
        return f"GatewayStatusEvent({self.gateway_id!r}, online={self.online!r}, at={self.at!r})"


class EventSeverity(StrEnum):
    """How urgent an event is for the back office (docs/events.md)."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


_SEVERITIES_SQL = ", ".join(f"'{severity.value}'" for severity in EventSeverity)


class DeviceEvent(Base):
    """An event a gateway reported about itself or one of its meters.

    Identified by (gateway, event_id) when the agent named it (migration
    0004; a meter's log entry is named by serial, code, time and repeat, so
    two codes logged in one second are two events), else — events of older
    agents — by (gateway, meter, kind, occurred_at): agents deliver at least
    once, and a redelivered event must leave one row. NULLs are distinct in a
    unique index on both SQLite and PostgreSQL (before 15), so gateway events
    (no meter) have their own partial index; the ingestion inserts with
    ``ON CONFLICT DO NOTHING``.
    """

    __tablename__ = "device_events"
    __table_args__ = (
        CheckConstraint(f"severity IN ({_SEVERITIES_SQL})", name="severity_known"),
        Index(
            "uq_device_events_meter_event",
            "gateway_id",
            "meter_serial",
            "kind",
            "occurred_at",
            unique=True,
            sqlite_where=text("meter_serial IS NOT NULL AND event_id IS NULL"),
            postgresql_where=text("meter_serial IS NOT NULL AND event_id IS NULL"),
        ),
        Index(
            "uq_device_events_gateway_event",
            "gateway_id",
            "kind",
            "occurred_at",
            unique=True,
            sqlite_where=text("meter_serial IS NULL AND event_id IS NULL"),
            postgresql_where=text("meter_serial IS NULL AND event_id IS NULL"),
        ),
        Index(
            "uq_device_events_event_id",
            "gateway_id",
            "event_id",
            unique=True,
            sqlite_where=text("event_id IS NOT NULL"),
            postgresql_where=text("event_id IS NOT NULL"),
        ),
        Index("ix_device_events_occurred_at", "occurred_at"),
        Index("ix_device_events_gateway_id_occurred_at", "gateway_id", "occurred_at"),
        Index("ix_device_events_meter_serial_occurred_at", "meter_serial", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(BigIntegerKey, primary_key=True)
    gateway_id: Mapped[str] = mapped_column(ForeignKey("gateways.id", ondelete="CASCADE"))
    # The meter the event is about; None for the gateway's own events.
    meter_serial: Mapped[str | None] = mapped_column(String(64))
    # The agent's event name: last_gasp, meter_comm_lost, gateway_started …
    kind: Mapped[str] = mapped_column(String(64))
    # The agent's stable name for the event (docs/agent.md); None from older agents.
    event_id: Mapped[str | None] = mapped_column(String(128))
    severity: Mapped[str] = mapped_column(String(16))
    # When it happened, by the clock that saw it (a DLMS meter's own clock for
    # its event log, the agent's otherwise): the event's at_ms.
    occurred_at: Mapped[datetime]
    # When the cloud first stored it (a redelivery keeps the first).
    received_at: Mapped[datetime]
    # The event's other fields (bus, code, name, error, dropped …) as sent.
    details: Mapped[dict[str, Any]] = mapped_column(JSON)

    def __repr__(self) -> str:
        return f"DeviceEvent({self.gateway_id!r}, {self.meter_serial!r}, {self.kind!r})"

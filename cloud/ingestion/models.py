"""Tables of the ingestion: per-minute counters and the dead-letter store.

`IngestionStatistics` has one row per (gateway, minute). Workers never read
then write a counter: they add to it with one statement,
``INSERT … ON CONFLICT (gateway_id, bucket_start_at) DO UPDATE SET
x = ingestion_statistics.x + excluded.x``, which PostgreSQL and SQLite (3.24+)
both run atomically, so any number of stateless workers can count at once
without losing increments.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from cloud.core.db import Base

__all__ = ["COUNTERS", "DeadLetter", "DeadLetterReason", "IngestionStatistics"]

BigIntegerKey = BigInteger().with_variant(Integer(), "sqlite")

# The additive columns of IngestionStatistics.
COUNTERS = ("readings_accepted", "readings_rejected", "batches", "sequence_gaps", "duplicates")


def _counter() -> Mapped[int]:
    return mapped_column(BigInteger, default=0, server_default=text("0"))


class IngestionStatistics(Base):
    """What the ingestion did for one gateway in one minute (UTC)."""

    __tablename__ = "ingestion_statistics"
    __table_args__ = tuple(
        CheckConstraint(f"{name} >= 0", name=f"{name}_ge_0") for name in COUNTERS
    )

    gateway_id: Mapped[str] = mapped_column(
        ForeignKey("gateways.id", ondelete="CASCADE"), primary_key=True
    )
    # Start of the minute, seconds and microseconds zero.
    bucket_start_at: Mapped[datetime] = mapped_column(primary_key=True)
    readings_accepted: Mapped[int] = _counter()
    readings_rejected: Mapped[int] = _counter()
    batches: Mapped[int] = _counter()
    # Batches missing between two received sequence numbers.
    sequence_gaps: Mapped[int] = _counter()
    # Batches received again (at-least-once delivery), stored once.
    duplicates: Mapped[int] = _counter()


class DeadLetterReason(StrEnum):
    """Known reason codes; the column accepts any short snake_case code."""

    BAD_CHECKSUM = "bad_checksum"
    UNKNOWN_GATEWAY = "unknown_gateway"
    METER_NOT_ON_GATEWAY = "meter_not_on_gateway"
    TIMESTAMP_OUT_OF_WINDOW = "timestamp_out_of_window"
    VALUE_OUT_OF_RANGE = "value_out_of_range"
    TOO_LARGE = "too_large"
    UNDECODABLE = "undecodable"


class DeadLetter(Base):
    """A message the ingestion refused, kept byte for byte with the reason."""

    __tablename__ = "dead_letters"
    __table_args__ = (
        Index("ix_dead_letters_gateway_id_received_at", "gateway_id", "received_at"),
        # The open letters only, in the console's list order: the default list
        # and the dashboard's count stay quick however many resolved ones pile up.
        Index(
            "ix_dead_letters_open_received_at_id",
            "received_at",
            "id",
            sqlite_where=text("resolved_at IS NULL"),
            postgresql_where=text("resolved_at IS NULL"),
        ),
        CheckConstraint("payload_size_bytes >= 0", name="payload_size_bytes_ge_0"),
    )

    id: Mapped[int] = mapped_column(BigIntegerKey, primary_key=True)
    received_at: Mapped[datetime] = mapped_column(index=True)
    topic: Mapped[str] = mapped_column(Text)
    # No foreign key: unknown gateways are dead-lettered too, and a dead
    # letter outlives a deleted gateway.
    gateway_id: Mapped[str | None] = mapped_column(String(64))
    # The raw bytes as received, or their first bytes when over the cap.
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    # Size of the message as received (>= len(payload) when capped).
    payload_size_bytes: Mapped[int] = mapped_column(BigInteger)
    reason_code: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    resolved_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"DeadLetter(id={self.id!r}, reason_code={self.reason_code!r})"

"""Customer accounts and which meters belong to them, over time.

Minimal on purpose: what the rule "a customer sees only its own meters"
needs. An `Account` has a number (the one on the bill) and at most one
holder, the customer user who logs in; `AccountMeter` links a meter serial
to an account from `linked_at` until `unlinked_at` (a move-out), so a new
occupant never sees the previous one's meter as theirs. The serial is not a
foreign key: `meters` rows are installations, and a supply point keeps its
account link while the physical meter is swapped on the gateway side.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from cloud.core.db import Base

__all__ = ["Account", "AccountMeter"]


class Account(Base):
    """A customer account."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The account number printed on bills; what customers quote.
    number: Mapped[str] = mapped_column(String(32), unique=True)
    # The customer user who may see it; None until the customer registers.
    holder_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[datetime]

    def __repr__(self) -> str:
        return f"Account(number={self.number!r})"


class AccountMeter(Base):
    """A meter (by serial) belonging to an account for an interval."""

    __tablename__ = "account_meters"
    __table_args__ = (
        CheckConstraint(
            "unlinked_at IS NULL OR unlinked_at >= linked_at", name="unlinked_after_linked"
        ),
        Index("ix_account_meters_account_id_meter_serial", "account_id", "meter_serial"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    meter_serial: Mapped[str] = mapped_column(String(64), index=True)
    linked_at: Mapped[datetime]
    unlinked_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"AccountMeter(account_id={self.account_id!r}, serial={self.meter_serial!r})"

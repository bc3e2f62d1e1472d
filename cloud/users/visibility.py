"""What of a meter's data a caller may see: all of it, or only its link periods.

Strategy: the authorizer decides whether a caller may ask about a meter at
all (`policies.resource_allowed`: a customer's meter must be linked to one of
its accounts *now*). That is not enough for data with a time axis: a meter
changes hands (a move-out, a new tenant) and its readings and events from
before belong to the previous occupant. So a route that answers with
readings, latest values or events asks `meter_window` too: staff roles
(`Grant.ALL`) see the whole history; a customer (`Grant.OWN`) sees only what
happened while the meter was linked to one of its accounts, and the route
clips its query to those periods (`MeterWindow.clip`, `MeterWindow.allows`).

Invariant: fail closed — an OWN grant without a user, or a meter never
linked to the user, gives an empty window (nothing), never an open one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from cloud.users import _ownership, policies

__all__ = ["UNRESTRICTED", "MeterWindow", "Period", "customer_window", "meter_window"]

Period = _ownership.Period


@dataclass(frozen=True)
class MeterWindow:
    """When a caller may see a meter's data.

    Attributes:
        periods: ``(start, end or None)`` half-open periods, oldest first; None
            when nothing is withheld (staff).
    """

    periods: tuple[Period, ...] | None

    @property
    def restricted(self) -> bool:
        return self.periods is not None

    def allows(self, moment: datetime) -> bool:
        """Was `moment` within the window?"""
        if self.periods is None:
            return True
        return any(start <= moment and (end is None or moment < end) for start, end in self.periods)

    def clip(self, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
        """``[start, end)`` cut to the window: the pieces to query, oldest first.

        Empty when the range lies wholly outside it (the answer is empty).
        """
        if self.periods is None:
            return [(start, end)] if start < end else []
        pieces = []
        for period_start, period_end in self.periods:
            piece_start = max(start, period_start)
            piece_end = end if period_end is None else min(end, period_end)
            if piece_start < piece_end:
                pieces.append((piece_start, piece_end))
        return pieces


UNRESTRICTED = MeterWindow(None)


def meter_window(
    *, session: Session, principal: policies.PrincipalLike, permission: str, serial: str
) -> MeterWindow:
    """The part of the meter's history `principal` may see under `permission`.

    Call it after the route's `require(permission)` let the caller in.

    Returns:
        `UNRESTRICTED` for a role with the permission on every object; for
        an own-only grant the periods the meter was linked to the caller's
        accounts (empty: nothing).
    """
    grant = policies.grant_of(principal.roles, permission)
    if grant is policies.Grant.ALL:
        return UNRESTRICTED
    if grant is None or principal.user_id is None:
        return MeterWindow(())
    return customer_window(session=session, user_id=principal.user_id, serial=serial)


def customer_window(*, session: Session, user_id: int, serial: str) -> MeterWindow:
    """The periods `serial` was linked to the user's accounts (empty: never)."""
    return MeterWindow(_ownership.meter_periods(session=session, user_id=user_id, serial=serial))

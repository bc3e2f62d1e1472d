"""Errors of the device link.

The tree::

    LinkError                   root: anything the link layer refuses
    ├── LinkOpenError           the port cannot be opened (no such device,
    │                           permission, host unreachable)
    ├── LinkClosed              the port went away while in use (USB adapter
    │                           unplugged, TCP connection reset)
    └── BusError                one transaction with one meter failed
        ├── NoResponse          silence until the meter's timeout, every try
        ├── GarbledResponse     bytes came, but no valid frame for this meter
        ├── RemoteException     the meter refused: a Modbus exception reply
        │                       (its code is kept) — the remote side's fault
        └── MeterUnavailable    not asked: the meter's circuit breaker is open
                                after repeated failures; retried after back-off
"""

from __future__ import annotations

__all__ = [
    "BusError",
    "GarbledResponse",
    "LinkClosed",
    "LinkError",
    "LinkOpenError",
    "MeterUnavailable",
    "NoResponse",
    "RemoteException",
]


class LinkError(Exception):
    """Root of the link layer's errors."""


class LinkOpenError(LinkError):
    """The port cannot be opened."""


class LinkClosed(LinkError):
    """The port went away while in use."""


class BusError(LinkError):
    """A transaction with one meter failed.

    Args:
        meter: who was asked (serial or unit id as text).
        detail: what happened.
    """

    def __init__(self, meter: str, detail: str) -> None:
        self.meter = meter
        self.detail = detail
        super().__init__(f"{meter}: {detail}")


class NoResponse(BusError):
    """The meter stayed silent until its timeout, on every try."""


class GarbledResponse(BusError):
    """Bytes came back, but no valid frame from this meter."""


class RemoteException(BusError):
    """The meter answered with a Modbus exception reply.

    Args:
        exception_code: the Modbus exception code (2 illegal address, …).
    """

    def __init__(self, meter: str, detail: str, exception_code: int) -> None:
        self.exception_code = exception_code
        super().__init__(meter, detail)


class MeterUnavailable(BusError):
    """Not asked: the meter's circuit breaker is open."""

"""Errors of the device link.

The tree::

    LinkError                   root: anything the link layer refuses
    ├── LinkOpenError           the port cannot be opened (no such device,
    │                           permission, host unreachable)
    ├── LinkClosed              the port went away while in use (USB adapter
    │                           unplugged, TCP connection reset)
    ├── BusError                one transaction with one meter failed
    │   ├── NoResponse          silence until the meter's timeout, every try
    │   ├── GarbledResponse     bytes came, but no valid frame for this meter
    │   ├── RemoteException     the meter refused: a Modbus exception reply
    │   │                       (its code is kept) — the remote side's fault
    │   └── MeterUnavailable    not asked: the meter's circuit breaker is open
    │                           after repeated failures; retried after back-off
    ├── OpticalError            the IEC 62056-21 optical handshake failed (its
    │   │                       stage is kept: identification, option select,
    │   │                       readout)
    │   ├── OpticalTimeout      the meter stayed silent (or stopped) within the
    │   │                       stage's timeout
    │   └── ReadoutChecksumError a data readout came whole but its BCC is wrong
    └── DlmsError               a DLMS/COSEM exchange with one meter failed
        ├── DlmsTimeout         no (complete) answer within the timeout
        ├── AssociationRejected the meter refused the association (wrong
        │                       password, unknown client): the remote's verdict
        └── DataAccessError     the meter refused a GET (its data-access-result
                                code is kept), or answered what we cannot read
"""

from __future__ import annotations

__all__ = [
    "AssociationRejected",
    "BusError",
    "DataAccessError",
    "DlmsError",
    "DlmsTimeout",
    "GarbledResponse",
    "LinkClosed",
    "LinkError",
    "LinkOpenError",
    "MeterUnavailable",
    "NoResponse",
    "OpticalError",
    "OpticalTimeout",
    "ReadoutChecksumError",
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


class OpticalError(LinkError):
    """The IEC 62056-21 optical handshake failed.

    Args:
        stage: where: "identification", "option select", "readout".
        detail: what happened.
    """

    def __init__(self, stage: str, detail: str) -> None:
        self.stage = stage
        self.detail = detail
        super().__init__(f"optical {stage}: {detail}")


class OpticalTimeout(OpticalError):
    """The meter stayed silent, or stopped sending, within the stage's timeout."""


class ReadoutChecksumError(OpticalError):
    """A data readout came whole, but its block check character is wrong."""


class DlmsError(LinkError):
    """A DLMS/COSEM exchange with one meter failed.

    Args:
        meter: who was asked (serial, port or host:port).
        detail: what happened.
    """

    def __init__(self, meter: str, detail: str) -> None:
        self.meter = meter
        self.detail = detail
        super().__init__(f"{meter}: {detail}")


class DlmsTimeout(DlmsError):
    """No (complete) answer within the timeout."""


class AssociationRejected(DlmsError):
    """The meter refused the association (wrong password, unknown client).

    Args:
        diagnostic: the AARE's diagnostic (13 authentication failure, …) when known.
    """

    def __init__(self, meter: str, detail: str, diagnostic: int | None = None) -> None:
        self.diagnostic = diagnostic
        super().__init__(meter, detail)


class DataAccessError(DlmsError):
    """The meter refused a request (data-access-result kept), or its answer is unreadable.

    Args:
        result: the DLMS data-access-result (3 read-write-denied, 4 undefined
            object, …); None when the answer could not be decoded.
    """

    def __init__(self, meter: str, detail: str, result: int | None = None) -> None:
        self.result = result
        super().__init__(meter, detail)

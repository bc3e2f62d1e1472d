"""Errors of the fleet domain; the tree lives in `cloud.core.exceptions`.

::

    CloudError
    ├── InvalidInput
    │   ├── InvalidGatewayId
    │   ├── InvalidMeter
    │   ├── InvalidSequence
    │   └── InvalidResolutionNote
    ├── NotFound
    │   ├── GatewayNotFound
    │   ├── MeterNotFound
    │   └── DeadLetterNotFound
    └── Conflict
        ├── GatewayAlreadyExists
        ├── GatewayDecommissioned
        ├── GatewayHasMeters
        └── MeterAlreadyInstalled
"""

from __future__ import annotations

from cloud.core.exceptions import Conflict, InvalidInput, NotFound

__all__ = [
    "DeadLetterNotFound",
    "GatewayAlreadyExists",
    "GatewayDecommissioned",
    "GatewayHasMeters",
    "GatewayNotFound",
    "InvalidGatewayId",
    "InvalidMeter",
    "InvalidResolutionNote",
    "InvalidSequence",
    "MeterAlreadyInstalled",
    "MeterNotFound",
]


class InvalidGatewayId(InvalidInput):
    """The id cannot be an MQTT topic segment (``^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$``)."""

    def __init__(self, gateway_id: str) -> None:
        super().__init__(
            f"invalid gateway id {gateway_id!r}: 1-64 characters, letters, digits, "
            "'_', '.', '-', starting with a letter or digit"
        )
        self.gateway_id = gateway_id


class InvalidMeter(InvalidInput):
    """A meter field is out of its domain (protocol, ratio, Modbus unit id, serial)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class InvalidSequence(InvalidInput):
    """An uplink batch sequence number outside 0 … 2**63-1."""

    def __init__(self, sequence: int) -> None:
        super().__init__(f"uplink sequence {sequence} is outside 0 … 2**63-1")
        self.sequence = sequence


class InvalidResolutionNote(InvalidInput):
    """The note of a dead letter's resolution is missing (where required) or unusable:
    blank, too long, or holding control characters. The message names the rule."""


class GatewayNotFound(NotFound):
    """No gateway with this id is registered."""

    def __init__(self, gateway_id: str) -> None:
        super().__init__(f"gateway {gateway_id!r} is not registered")
        self.gateway_id = gateway_id


class MeterNotFound(NotFound):
    """No installed meter with this serial."""

    def __init__(self, serial: str) -> None:
        super().__init__(f"meter {serial!r} is not installed on any gateway")
        self.serial = serial


class DeadLetterNotFound(NotFound):
    """No dead letter with this id."""

    def __init__(self, dead_letter_id: int) -> None:
        super().__init__(f"dead letter {dead_letter_id} does not exist")
        self.dead_letter_id = dead_letter_id


class GatewayAlreadyExists(Conflict):
    """A gateway with this id (or broker username) is already registered."""

    def __init__(self, gateway_id: str) -> None:
        super().__init__(f"gateway {gateway_id!r} is already registered")
        self.gateway_id = gateway_id


class GatewayDecommissioned(Conflict):
    """The gateway was decommissioned: no meters may be installed on it."""

    def __init__(self, gateway_id: str) -> None:
        super().__init__(f"gateway {gateway_id!r} is decommissioned")
        self.gateway_id = gateway_id


class GatewayHasMeters(Conflict):
    """The gateway still has installed meters: move or remove them first."""

    def __init__(self, gateway_id: str, count: int) -> None:
        super().__init__(f"gateway {gateway_id!r} still has {count} installed meter(s)")
        self.gateway_id = gateway_id
        self.count = count


class MeterAlreadyInstalled(Conflict):
    """The serial is installed on a gateway: remove or move it first."""

    def __init__(self, serial: str, gateway_id: str | None) -> None:
        where = f"on gateway {gateway_id!r}" if gateway_id else "on another gateway"
        super().__init__(f"meter {serial!r} is already installed {where}; use move_meter")
        self.serial = serial
        self.gateway_id = gateway_id

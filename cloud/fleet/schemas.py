"""Read models of the fleet for the API: built from ORM rows, never the other way.

No schema carries a broker password hash; `GatewayRegistered` carries the
plain password exactly once, in the response to the registration.
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import AwareDatetime, BaseModel, ConfigDict

from cloud.fleet.models import MeterProtocol

__all__ = [
    "DeadLetterRead",
    "GatewayRead",
    "GatewayRegistered",
    "GatewayStatusEventRead",
    "IngestionStatisticsRead",
    "MeterRead",
]


class _ReadModel(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)


class GatewayRead(_ReadModel):
    """A gateway as the console shows it."""

    id: str
    name: str
    site: str
    created_at: AwareDatetime
    last_seen_at: AwareDatetime | None
    online: bool
    agent_version: str | None
    broker_username: str
    last_sequence: int | None
    decommissioned_at: AwareDatetime | None


class GatewayRegistered(_ReadModel):
    """The answer to a registration: the only time the broker password is shown."""

    gateway: GatewayRead
    broker_password: str


class MeterRead(_ReadModel):
    """One installation of a meter on a gateway."""

    id: int
    serial: str
    model: str
    protocol: MeterProtocol
    gateway_id: str
    installation_point: str | None
    ct_ratio: Decimal
    vt_ratio: Decimal
    unit_id: int | None
    installed_at: AwareDatetime
    removed_at: AwareDatetime | None


class GatewayStatusEventRead(_ReadModel):
    """An online/offline transition."""

    id: int
    gateway_id: str
    at: AwareDatetime
    online: bool
    reason: str
    agent_version: str | None
    buffer_depth_readings: int | None


class IngestionStatisticsRead(_ReadModel):
    """A gateway's ingestion counters for one minute."""

    gateway_id: str
    bucket_start_at: AwareDatetime
    readings_accepted: int
    readings_rejected: int
    batches: int
    sequence_gaps: int
    duplicates: int


class DeadLetterRead(_ReadModel):
    """A refused message; in JSON the payload is URL-safe base64 (pydantic's "base64")."""

    model_config = ConfigDict(
        from_attributes=True, frozen=True, ser_json_bytes="base64", val_json_bytes="base64"
    )

    id: int
    received_at: AwareDatetime
    topic: str
    gateway_id: str | None
    payload: bytes
    payload_size_bytes: int
    reason_code: str
    reason: str
    resolved_at: AwareDatetime | None

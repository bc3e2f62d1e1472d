"""Read models of the fleet for the API: built from ORM rows, never the other way.

No schema carries a broker password hash; `GatewayRegistered` carries the
plain password exactly once, in the response to the registration.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from cloud.fleet.models import MeterProtocol

__all__ = [
    "DeadLetterRead",
    "GatewayCreate",
    "GatewayDetail",
    "GatewayRead",
    "GatewayRegistered",
    "GatewayStatusEventRead",
    "GatewaySummary",
    "IngestionStatisticsRead",
    "MeterCreate",
    "MeterDetail",
    "MeterMove",
    "MeterRead",
    "MeterRemove",
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


# --- API: requests and composed answers (cloud/fleet/router.py) ---------------


class _Request(BaseModel):
    # Unknown fields are refused: a misspelt "ct_ration" must not be ignored.
    model_config = ConfigDict(extra="forbid")

    @field_validator("*")
    @classmethod
    def _times_in_utc(cls, value: Any) -> Any:
        # Stored in UTC anyway; converting here makes the answer say what is stored.
        return value.astimezone(UTC) if isinstance(value, datetime) else value


class GatewayCreate(_Request):
    """Register a gateway; its id is its MQTT topic segment and broker username."""

    id: str = Field(min_length=1, max_length=64, examples=["gw-substation-01"])
    name: str = Field(min_length=1, max_length=200, examples=["Substation 01, panel B"])
    site: str = Field(min_length=1, max_length=200, examples=["North"])


class GatewaySummary(GatewayRead):
    """A gateway with what the fleet list shows beside it."""

    meter_count: int
    last_status: GatewayStatusEventRead | None


class GatewayDetail(GatewaySummary):
    """A gateway with the meters installed on it now."""

    meters: list[MeterRead]


class MeterCreate(_Request):
    """Install a meter on the gateway named in the path."""

    serial: str = Field(min_length=1, max_length=64, examples=["LGZ1000001"])
    model: str = Field(min_length=1, max_length=64, examples=["eastron-sdm630"])
    protocol: MeterProtocol
    installation_point: str | None = Field(default=None, max_length=2000)
    ct_ratio: Decimal = Field(default=Decimal(1), gt=0)
    vt_ratio: Decimal = Field(default=Decimal(1), gt=0)
    unit_id: int | None = Field(default=None, ge=0, le=255)
    installed_at: AwareDatetime | None = None


class MeterMove(_Request):
    """Move an installed meter to another gateway; omitted fields keep their values."""

    gateway_id: str = Field(min_length=1, max_length=64)
    at: AwareDatetime | None = None
    installation_point: str | None = Field(default=None, max_length=2000)
    ct_ratio: Decimal | None = Field(default=None, gt=0)
    vt_ratio: Decimal | None = Field(default=None, gt=0)
    unit_id: int | None = Field(default=None, ge=0, le=255)


class MeterRemove(_Request):
    """Close a meter's installation (default: now)."""

    at: AwareDatetime | None = None


class MeterDetail(_ReadModel):
    """A meter by serial: where it is installed now and every installation before."""

    serial: str
    current: MeterRead | None
    installations: list[MeterRead]

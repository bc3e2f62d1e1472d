"""API models of the events (read only: events come from the gateways)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["EventRead"]


class EventRead(BaseModel):
    """An event a gateway reported about itself or one of its meters."""

    model_config = ConfigDict(from_attributes=True, frozen=True)

    id: int
    gateway_id: str
    meter_serial: str | None = Field(description="The meter it is about; null for the gateway.")
    kind: str = Field(description="last_gasp, power_restored, meter_comm_lost, tamper …")
    event_id: str | None = Field(
        default=None,
        description="The agent's stable name for the event (unique per gateway); "
        "null for events of agents that sent none.",
    )
    severity: str = Field(description="info, warning or critical.")
    occurred_at: datetime = Field(
        description="When it happened, by the clock that saw it (a DLMS meter's own "
        "clock for its event log, the agent's otherwise)."
    )
    received_at: datetime = Field(description="When the cloud first stored it.")
    details: dict[str, Any] = Field(description="The event's other fields as sent.")

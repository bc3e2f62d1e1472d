"""Events of gateways and meters: stored by the ingestion, read by the API and console.

The table (`cloud.fleet.models.DeviceEvent`) sits with the fleet it belongs
to; this package holds what is done with it (docs/events.md).
"""

from cloud.events.queries import list_events
from cloud.events.service import EventRecord, ingest_event, parse_event, store_event

__all__ = ["EventRecord", "ingest_event", "list_events", "parse_event", "store_event"]

"""The fleet: gateways, the meters on them, their status history."""

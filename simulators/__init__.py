"""simulators: meters and fleets that behave like real ones on the same
links. May import fastcodec, firmware_bridge and edge_agent's device
profiles."""

"""firmware_bridge: the device link (serial/RS-485, optical, TCP), bus
arbitration and meter firmware transfer. May import fastcodec only."""

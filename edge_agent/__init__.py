"""edge_agent: the gateway service and the technicians' commissioning CLI.

Layout (hexagonal, STYLE.md): `domain/` readings, buffer and retry policy
with no I/O; `adapters/` the SQLite buffer, MQTT and meter drivers;
`service/` the poll cycle; `entrypoints/` the daemon and the CLI. May import
fastcodec and firmware_bridge only; never cloud.
"""

"""Ingestion of uplink batches: statistics and dead letters (tables here)."""

"""Metering: what the meters measured, read from the time-series store (latest values,
time-range queries at raw/15m/1h/1d resolution)."""

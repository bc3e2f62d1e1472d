"""cloud: ingestion, time-series and operational stores, the utility's
modules, the API and the console. May import fastcodec only; never
edge_agent."""

"""Cross-domain plumbing of the cloud: the operational database and the error root."""

"""See edge_agent/__init__.py for what belongs here."""

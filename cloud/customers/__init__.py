"""Customers: accounts and the meters linked to them (billing comes later)."""

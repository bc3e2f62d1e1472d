"""Secrets the demo keeps in its data folder: one file each, readable by us only."""

from __future__ import annotations

import os
from pathlib import Path


def write_secret(path: Path, secret: str) -> None:
    """Write `secret` to `path` with mode 0600 from the start (never world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(secret + "\n")


def read_secret(path: Path) -> str | None:
    """The secret `write_secret` kept in `path`; None when the file is missing or empty."""
    try:
        secret = path.read_text().strip()
    except FileNotFoundError:
        return None
    return secret or None

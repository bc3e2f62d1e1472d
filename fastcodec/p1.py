"""DSMR / e-MUCS P1 telegrams (selector: the compiled or the pure twin).

See `fastcodec._p1_py` for the protocol, its spec clauses and the invariants.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastcodec import _select

if TYPE_CHECKING:
    from fastcodec._p1_py import (
        DEFAULT_MAX_TELEGRAM_BYTES,
        Identification,
        ProfileEntry,
        Reading,
        Telegram,
        TelegramSplitter,
        build_telegram,
        parse_telegram,
    )

    IMPLEMENTATION: str
else:
    _impl, IMPLEMENTATION = _select.load("p1")
    DEFAULT_MAX_TELEGRAM_BYTES = _impl.DEFAULT_MAX_TELEGRAM_BYTES
    Identification = _impl.Identification
    ProfileEntry = _impl.ProfileEntry
    Reading = _impl.Reading
    Telegram = _impl.Telegram
    TelegramSplitter = _impl.TelegramSplitter
    build_telegram = _impl.build_telegram
    parse_telegram = _impl.parse_telegram

__all__ = [
    "DEFAULT_MAX_TELEGRAM_BYTES",
    "IMPLEMENTATION",
    "Identification",
    "ProfileEntry",
    "Reading",
    "Telegram",
    "TelegramSplitter",
    "build_telegram",
    "parse_telegram",
]

"""How the console shows a dead letter's payload: bytes in, something a person can read out.

Strategy: a dead letter is whatever a gateway (or anyone holding its
credentials) sent, so its bytes are hostile until shown otherwise. This
module never trusts them and never returns markup: it returns plain text
that the templates escape (Jinja2 autoescape), in one of four forms:

- ``json``: the whole message is UTF-8 JSON — shown indented;
- ``text``: readable UTF-8 — shown as is;
- ``hex``: anything else (invalid UTF-8, NUL and other C0 control bytes) —
  a classic dump, offset, 16 bytes in hex, the same bytes as ASCII;
- ``empty``: no bytes at all.

Invariants: any bytes give a rendering, never an exception (a JSON nesting
deep enough to overflow the parser's recursion counts as text); the output
is bounded by the caller's byte budget whatever the payload's size; a
character that prints as nothing or reorders the text around it (bidi
overrides, zero-width marks — Unicode categories Cc, Cf, Zl, Zp, Cs, Co, Cn)
is shown as a ``\\uXXXX`` escape, so what is on screen is what was sent.
"""

from __future__ import annotations

import codecs
import json
from dataclasses import dataclass
from typing import Literal

__all__ = ["PayloadPreview", "PayloadView", "hex_dump", "preview_of", "view_of"]

PayloadKind = Literal["json", "text", "hex", "empty"]

HEX_DUMP_WIDTH = 16
# C0 controls a text protocol may carry; any other (NUL, ESC, …) means binary.
_TEXT_CONTROLS = frozenset("\t\n\r")


@dataclass(frozen=True)
class PayloadPreview:
    """A payload in one short line, for a list."""

    kind: PayloadKind
    text: str


@dataclass(frozen=True)
class PayloadView:
    """A payload as a dead letter's own page shows it.

    Attributes:
        kind: how `text` reads (``json``, ``text``, ``hex`` or ``empty``).
        text: what to show; plain text, the template escapes it.
        shown_bytes: how many of the payload's bytes `text` covers.
        stored_bytes: how many bytes the dead-letter store kept.
        size_bytes: the message's size as received (more than stored when capped).
    """

    kind: PayloadKind
    text: str
    shown_bytes: int
    stored_bytes: int
    size_bytes: int

    @property
    def truncated(self) -> bool:
        """True when the page shows less than the message as received."""
        return self.shown_bytes < self.size_bytes


def _visible(char: str) -> str:
    if char.isprintable() or char in _TEXT_CONTROLS:
        return char
    code = ord(char)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _visible_text(text: str) -> str:
    """`text` with every invisible or reordering character written as an escape."""
    if text.isprintable():
        return text
    return "".join(_visible(char) for char in text)


def _readable(data: bytes, *, complete: bool) -> str | None:
    """The bytes as text if they are UTF-8 without binary control bytes, else None.

    When `complete` is false the bytes are a prefix: a multi-byte character
    cut at its end is dropped rather than taken for invalid UTF-8.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    try:
        text = decoder.decode(data, final=complete)
    except UnicodeDecodeError:
        return None
    if any(char < " " and char not in _TEXT_CONTROLS for char in text):
        return None
    return text


def _pretty_json(text: str) -> str | None:
    """`text` indented if it is one JSON document, else None."""
    stripped = text.strip()
    if not stripped or stripped[0] not in "{[":
        # A bare number or string is "JSON" too, but showing it as text reads better.
        return None
    try:
        document = json.loads(stripped)
    except (ValueError, RecursionError):
        # ValueError covers bad JSON and numbers past int's digit limit;
        # RecursionError a nesting deeper than the parser allows.
        return None
    try:
        return json.dumps(document, indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):
        return None


def hex_dump(data: bytes, *, start_offset: int = 0) -> str:
    """`data` as lines of offset, 16 bytes in hex and the same bytes as ASCII (``.`` if not)."""
    lines = []
    for index in range(0, len(data), HEX_DUMP_WIDTH):
        chunk = data[index : index + HEX_DUMP_WIDTH]
        ascii_column = "".join(chr(byte) if 0x20 <= byte < 0x7F else "." for byte in chunk)
        hex_column = chunk.hex(" ").ljust(HEX_DUMP_WIDTH * 3 - 1)
        lines.append(f"{start_offset + index:08x}  {hex_column}  |{ascii_column}|")
    return "\n".join(lines)


def preview_of(data: bytes, *, size_bytes: int, max_chars: int) -> PayloadPreview:
    """A one-line preview of a payload's first bytes.

    Args:
        data: the first bytes of the payload (or all of them).
        size_bytes: the payload's whole size, to know whether `data` is a prefix.
        max_chars: the longest preview; longer text ends with "…".
    """
    if not data:
        return PayloadPreview("empty", "")
    complete = len(data) >= size_bytes
    text = _readable(data, complete=complete)
    if text is None:
        shown = data[: max(1, max_chars // 3)]
        more = len(shown) < size_bytes
        return PayloadPreview("hex", shown.hex(" ") + (" …" if more else ""))
    line = _visible_text(" ".join(text.split()))
    if len(line) > max_chars or not complete:
        return PayloadPreview("text", line[: max_chars - 1] + "…")
    return PayloadPreview("text", line)


def view_of(payload: bytes, *, size_bytes: int, max_bytes: int) -> PayloadView:
    """A payload for its dead letter's page, at most about `max_bytes` of it shown.

    Args:
        payload: the stored bytes (the first MiB of a larger message).
        size_bytes: the size as received.
        max_bytes: how many bytes of the payload the page may show.
    """
    stored = len(payload)
    if not payload:
        return PayloadView("empty", "", 0, 0, size_bytes)
    whole_message = stored >= size_bytes
    text = _readable(payload, complete=whole_message)
    if text is not None and whole_message:
        pretty = _pretty_json(text)
        if pretty is not None and len(pretty) <= max_bytes:
            return PayloadView("json", _visible_text(pretty), stored, stored, size_bytes)
    shown = payload[:max_bytes]
    if text is not None:
        shown_text = _readable(shown, complete=len(shown) >= size_bytes)
        if shown_text is not None:
            covered = len(shown_text.encode("utf-8"))
            return PayloadView("text", _visible_text(shown_text), covered, stored, size_bytes)
    return PayloadView("hex", hex_dump(shown), len(shown), stored, size_bytes)

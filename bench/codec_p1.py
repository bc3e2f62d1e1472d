"""P1 telegram parsing: fastcodec compiled and pure beside a naive regex parser.

Input: the DSMR 5 telegram of an Iskra MT382 (telegram_v5.txt, 890 bytes,
37 data lines). There is no peer library we may depend on (dsmr_parser pins
an old dlms-cosem), so the baseline is a naive regex parser, the way
integrations usually do it: one regex over the lines, the CRC checked with a
table-driven loop, every value turned into a float where it can be. Its results
are checked against ours before timing.
"""

from __future__ import annotations

import re
from pathlib import Path

from bench._timing import machine_line, report, seconds_per_call
from fastcodec import _p1_c, _p1_py

TELEGRAM = (
    Path(__file__).resolve().parents[2] / "shared/vectors/p1_dsmr_iec62056-21/telegram_v5.txt"
)
_LINE = re.compile(r"^(\d+-\d+:\d+\.\d+\.\d+)((?:\([^)]*\))+)", re.MULTILINE)
_CRC_TABLE = [0] * 256
for _byte in range(256):
    _crc = _byte
    for _ in range(8):
        _crc = (_crc >> 1) ^ 0xA001 if _crc & 1 else _crc >> 1
    _CRC_TABLE[_byte] = _crc
_GROUP = re.compile(r"\(([^)*]*)(?:\*([^)]*))?\)")


def naive_regex_parse(raw: bytes) -> tuple[bool, dict[str, tuple[float | str, str]]]:
    """A naive regex parser, the way integrations usually do it."""
    text = raw.decode("ascii")
    end = text.index("!")
    crc = 0
    for byte in raw[: end + 1]:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    checksum_ok = int(text[end + 1 : end + 5], 16) == crc
    readings: dict[str, tuple[float | str, str]] = {}
    for match in _LINE.finditer(text):
        groups = _GROUP.findall(match.group(2))
        value, unit = groups[-1]
        try:
            readings[match.group(1)] = (float(value), unit)
        except ValueError:
            readings[match.group(1)] = (value, unit)
    return checksum_ok, readings


def run() -> None:
    raw = TELEGRAM.read_bytes()
    ours = _p1_c.parse_telegram(raw)
    assert _p1_py.parse_telegram(raw) == ours
    checksum_ok, theirs = naive_regex_parse(raw)
    assert checksum_ok is ours.checksum_ok is True
    for reading in ours.readings:
        if reading.obis in ("1-0:99.97.0", "0-0:1.0.0"):
            continue  # log count and timestamp text: the naive parser keeps the last group
        value = reading.value if reading.timestamp is None else reading.raw[-1][0]
        expected = theirs[reading.obis]
        if isinstance(value, float) or isinstance(expected[0], float):
            assert float(value) == expected[0], reading.obis
        else:
            assert value == expected[0], reading.obis

    print(machine_line())
    timings = {
        "fastcodec cython": seconds_per_call(lambda: _p1_c.parse_telegram(raw)),
        "fastcodec python": seconds_per_call(lambda: _p1_py.parse_telegram(raw)),
        "naive regex": seconds_per_call(lambda: naive_regex_parse(raw)),
    }
    report(
        f"P1 DSMR 5 telegram ({len(raw)} B)",
        timings,
        baseline="naive regex",
        item_name="telegram",
    )
    splitter_timings = {
        "fastcodec cython": seconds_per_call(lambda: _p1_c.TelegramSplitter().feed(raw)),
        "fastcodec python": seconds_per_call(lambda: _p1_py.TelegramSplitter().feed(raw)),
    }
    report(
        "P1 splitter, one telegram",
        splitter_timings,
        baseline="fastcodec python",
        item_name="telegram",
    )


if __name__ == "__main__":
    run()

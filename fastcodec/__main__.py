"""`python -m fastcodec decode --format FORMAT HEX|@FILE`: what a frame holds, as JSON.

For technicians reading a hex dump from a log, and for tests. Input is hex
(spaces, colons and a 0x prefix allowed) or `@path` for the raw bytes of a
file (`@-` reads standard input). Exit codes: 0 decoded, 1 the bytes are not
a valid frame (one line on stderr says why and where), 2 usage.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import enum
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastcodec import apdu, axdr, hdlc, iec62056_21, modbus, p1, uplink
from fastcodec.exceptions import ChecksumError, CodecError
from fastcodec.obis import Obis


def jsonable(value: Any) -> Any:
    """Plain JSON values for the codecs' result types."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, float) and value != value:
        return None  # NaN has no JSON form
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Obis):
        return str(value)  # its canonical text, 1-0:1.8.0
    if hasattr(value, "_asdict"):
        return {k: jsonable(v) for k, v in value._asdict().items()}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    return value


def decode_modbus(data: bytes) -> dict[str, Any]:
    try:
        frame: Any = modbus.parse_response(data)
        direction = "response"
    except CodecError as response_error:
        try:
            frame = modbus.parse_request(data)
        except CodecError:
            raise response_error from None
        direction = "request"
    result = {"direction": direction, "frame_type": type(frame).__name__, **jsonable(frame)}
    if isinstance(frame, modbus.ReadRegistersResponse):
        result["registers"] = list(frame.registers)
    return result


def decode_hdlc(data: bytes) -> dict[str, Any]:
    frame = hdlc.parse_frame(data)
    result: dict[str, Any] = jsonable(frame)
    result["payload"] = result.pop("information")
    return result


def decode_dlms_apdu(data: bytes) -> dict[str, Any]:
    # An HDLC information field starts with the LLC header; accept it too.
    if data[:2] in (b"\xe6\xe6", b"\xe6\xe7") and len(data) > 3:
        data = data[3:]
    value = apdu.parse_apdu(data)
    described: Any = apdu.describe(value)
    result = getattr(value, "result", None)
    if isinstance(result, bytes) and isinstance(described, dict):
        described["data"] = jsonable(axdr.decode(result))
    return {"apdu": described}


def _readings_of_data_sets(data_sets: Any) -> list[dict[str, Any]]:
    readings = []
    for data_set in data_sets:
        for value in data_set.values:
            readings.append(
                {
                    "obis": data_set.obis or data_set.address,
                    "value": value.number if value.number is not None else value.text,
                    "unit": value.unit,
                }
            )
    return readings


def decode_iec62056_21(data: bytes) -> dict[str, Any]:
    checksum_ok = True
    try:
        message: Any = iec62056_21.parse_message(data)
    except ChecksumError:
        checksum_ok = False  # still show what the block holds
        message = iec62056_21.DataReadout(iec62056_21.parse_data_sets(data[1 : data.rfind(b"!")]))
    result: dict[str, Any] = {"message": type(message).__name__, "checksum_ok": checksum_ok}
    if isinstance(message, iec62056_21.DataReadout):
        result["readings"] = _readings_of_data_sets(message.data_sets)
    else:
        result.update(jsonable(message))
    return result


def decode_p1(data: bytes) -> dict[str, Any]:
    telegram = p1.parse_telegram(data)
    identification = telegram.identification
    return {
        "identification": jsonable(identification),
        "checksum_ok": telegram.checksum_ok,
        "readings": [
            {
                "obis": r.obis,
                "value": r.value,
                "unit": r.unit,
                **({"timestamp": r.timestamp.isoformat()} if r.timestamp else {}),
            }
            for r in telegram.readings
        ],
    }


def decode_uplink(data: bytes) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(uplink.batch_to_json(uplink.decode_batch(data)))
    return result


DECODERS: dict[str, Callable[[bytes], dict[str, Any]]] = {
    "modbus-rtu": decode_modbus,
    "hdlc": decode_hdlc,
    "dlms-apdu": decode_dlms_apdu,
    "iec62056-21": decode_iec62056_21,
    "p1": decode_p1,
    "uplink": decode_uplink,
}


def read_input(text: str) -> bytes:
    """Bytes from hex text, or from a file (`@path`, `@-` for stdin)."""
    if text.startswith("@"):
        if text == "@-":
            return sys.stdin.buffer.read()
        return Path(text[1:]).read_bytes()
    cleaned = text.strip().removeprefix("0x").replace(" ", "").replace(":", "").replace("\n", "")
    return bytes.fromhex(cleaned)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fastcodec",
        description="Decode a frame from a hex dump or a file and print it as JSON.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    decode = commands.add_parser("decode", help="decode one frame, telegram or batch")
    decode.add_argument(
        "--format", required=True, choices=sorted(DECODERS), help="what the bytes are"
    )
    decode.add_argument(
        "input", help="hex bytes (e.g. '01 04 04 43 66 33 34 1b 38'), or @FILE, @- for stdin"
    )
    arguments = parser.parse_args(argv)
    try:
        data = read_input(arguments.input)
    except (ValueError, OSError) as exc:
        print(f"error: cannot read the input: {exc}", file=sys.stderr)
        return 2
    try:
        decoded = DECODERS[arguments.format](data)
    except CodecError as exc:
        print(f"error: not a valid {arguments.format} frame: {exc}", file=sys.stderr)
        return 1
    json.dump(decoded, sys.stdout, indent=2, ensure_ascii=False)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
